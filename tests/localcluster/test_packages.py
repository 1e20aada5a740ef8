"""What the real tiers install or ask for: the right Debian packages, one line, no silent pass."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from localcluster import cluster, packages
from localcluster.layout import Layout


def test_each_tool_maps_to_the_package_that_provides_it() -> None:
    assert packages.packages_for(["iptables", "iptables-restore", "ip"]) == ["iproute2", "iptables"]
    assert packages.packages_for(["docker", "dockerd", "debootstrap"]) == [
        "debootstrap",
        "docker.io",
    ]
    assert packages.packages_for(["gcc"]) == ["gcc", "libc6-dev"]


def test_the_missing_line_names_tools_packages_and_why_they_were_not_installed() -> None:
    line = packages.missing_line(["iptables"], "not root")
    assert line == "missing iptables: apt-get install iptables (not installed here: not root)"
    assert "\n" not in line


@pytest.fixture
def only_on_path(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Pretend exactly the tools in the returned set are installed."""
    present: set[str] = set()
    monkeypatch.setattr(
        packages.shutil, "which", lambda tool: f"/usr/bin/{tool}" if tool in present else None
    )
    return present


def test_ensure_installs_what_is_missing_and_passes_once_it_is_there(
    monkeypatch: pytest.MonkeyPatch, only_on_path: set[str]
) -> None:
    installed: list[list[str]] = []

    def apt_install(names: list[str]) -> None:
        installed.append(names)
        only_on_path.update({"iptables", "iptables-restore"})

    monkeypatch.setattr(packages, "can_install", lambda: None)
    monkeypatch.setattr(packages, "apt_install", apt_install)
    only_on_path.add("ip")
    said: list[str] = []
    assert packages.ensure(["ip", "iptables", "iptables-restore"], said.append) is None
    assert installed == [["iptables"]]
    assert said == ["installing iptables (apt-get) for iptables, iptables-restore ..."]


def test_ensure_says_what_is_still_missing_when_apt_get_did_not_help(
    monkeypatch: pytest.MonkeyPatch, only_on_path: set[str]
) -> None:
    monkeypatch.setattr(packages, "can_install", lambda: None)
    monkeypatch.setattr(packages, "apt_install", lambda names: "`apt-get update -qq` failed")
    problem = packages.ensure(["debootstrap"], lambda _: None)
    assert problem == (
        "missing debootstrap: apt-get install debootstrap "
        "(not installed here: `apt-get update -qq` failed)"
    )


def test_ensure_never_installs_when_told_not_to(
    monkeypatch: pytest.MonkeyPatch, only_on_path: set[str]
) -> None:
    monkeypatch.setenv("REBOUND_NO_APT", "1")
    monkeypatch.setattr(packages, "apt_install", lambda names: pytest.fail("installed"))
    problem = packages.ensure(["docker", "dockerd"], lambda _: None)
    assert problem == (
        "missing docker, dockerd: apt-get install docker.io "
        "(not installed here: REBOUND_NO_APT is set)"
    )


def test_the_cli_exits_1_with_the_line_and_2_for_an_unknown_tool(
    monkeypatch: pytest.MonkeyPatch, only_on_path: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REBOUND_NO_APT", "1")
    assert packages.main(["iptables"]) == 1
    assert capsys.readouterr().err.startswith("missing iptables: apt-get install iptables")
    assert packages.main(["no-such-tool"]) == 2
    only_on_path.add("iptables")
    assert packages.main(["iptables"]) == 0


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="needs root on Linux")
def test_the_local_cluster_preflight_fails_without_iptables(
    monkeypatch: pytest.MonkeyPatch, only_on_path: set[str], tmp_path: Path
) -> None:
    """The process node needs iptables for NetworkPolicy: no preflight passes without it."""
    only_on_path.update({"ip", "nsenter", "go"})
    problem = cluster.preflight(Layout(state=tmp_path))
    assert problem is not None
    assert problem.startswith("missing iptables, iptables-restore: apt-get install iptables")
