"""The dependency locks (requirements/*.txt) are complete, consistent and actually used."""

from __future__ import annotations

import importlib.metadata
import tomllib

import pytest
from lockfile import LOCK_DIR, canonical, locked_versions
from packaging.requirements import Requirement

PYPROJECT = tomllib.loads((LOCK_DIR.parent / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
BUILD_TOOLS = [
    Requirement(line)
    for line in (LOCK_DIR / "build.in").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def direct_requirements(extra: str) -> list[Requirement]:
    """What pyproject.toml asks for `extra`, with the project's own extras expanded."""
    found = []
    for line in EXTRAS[extra]:
        requirement = Requirement(line)
        if canonical(requirement.name) == "rebound":
            for inner in sorted(requirement.extras):
                found += direct_requirements(inner)
        else:
            found.append(requirement)
    return found


@pytest.mark.parametrize("extra", ["test", "peer", "operator", "gui"])
def test_each_lock_pins_every_requirement_of_its_extra_within_its_range(extra: str) -> None:
    pins = locked_versions(extra)
    for requirement in [*direct_requirements(extra), *BUILD_TOOLS]:
        name = canonical(requirement.name)
        assert name in pins, f"{name} is not in requirements/{extra}.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements/{extra}.txt pins {name}=={pins[name]}, outside {requirement}: "
            "run `make lock`"
        )


@pytest.mark.parametrize("extra", ["peer", "operator"])
def test_the_image_locks_agree_with_the_test_lock(extra: str) -> None:
    test_pins = locked_versions("test")
    differ = {
        name: (version, test_pins.get(name))
        for name, version in locked_versions(extra).items()
        if test_pins.get(name) != version
    }
    assert not differ, f"requirements/{extra}.txt differs from test.txt: {differ}"


def test_the_gui_lock_swaps_in_the_same_opencv_with_a_gui() -> None:
    """`make install-gui` replaces opencv-python-headless by opencv-python of one version."""
    gui, test = locked_versions("gui"), locked_versions("test")
    assert gui["opencv-python"] == test["opencv-python-headless"]
    shared = {name: version for name, version in gui.items() if name != "opencv-python"}
    assert shared == {name: test[name] for name in shared}


def test_this_environment_has_exactly_the_locked_versions() -> None:
    """`make install` installs from requirements/test.txt (rerun it after a lock change)."""
    installed = {
        canonical(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
    }
    wrong = {
        name: (pinned, installed.get(name))
        for name, pinned in locked_versions("test").items()
        if installed.get(name) != pinned
    }
    assert not wrong, f"installed versions differ from requirements/test.txt: {wrong}"
