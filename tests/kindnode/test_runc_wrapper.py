"""The runc wrapper removes exactly what the host's bounding set lacks, where runc reads it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kindnode import engine, runc_wrapper

ALL = list(runc_wrapper.CAPABILITIES)


def test_the_bounding_set_mask_names_the_missing_capabilities() -> None:
    status = "Name:\tx\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n"
    assert runc_wrapper.bounding_set_lacks(status) == ["CAP_SYS_RESOURCE"]
    assert runc_wrapper.bounding_set_lacks("CapBnd:\t000001ffffffffff\n") == []
    with pytest.raises(ValueError):
        runc_wrapper.bounding_set_lacks("Name:\tx\n")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            [
                "--root",
                "/r",
                "--log",
                "/l",
                "--log-format",
                "json",
                "create",
                "--bundle",
                "/b",
                "id",
            ],
            ("/b/config.json", "spec"),
        ),
        (["create", "--bundle=/b2", "id"], ("/b2/config.json", "spec")),
        (["--systemd-cgroup", "run", "-b", "/b3", "id"], ("/b3/config.json", "spec")),
        (["create", "id"], ("/cwd/config.json", "spec")),
        (
            ["--root", "/r", "exec", "--process", "/tmp/p.json", "--detach", "id"],
            ("/tmp/p.json", "process"),
        ),
        (["exec", "-p", "/tmp/q.json", "id"], ("/tmp/q.json", "process")),
        (["exec", "id", "sh"], None),
        (["--root", "/r", "start", "id"], None),
        (["--root", "/r", "state", "create"], None),  # "create" is the container's name here
        (["--version"], None),
    ],
)
def test_only_create_run_and_exec_are_edited(
    argv: list[str], expected: tuple[str, str] | None
) -> None:
    assert runc_wrapper.file_to_edit(argv, "/cwd") == expected


def test_a_spec_and_a_process_file_lose_the_capability_in_every_set() -> None:
    spec = {"process": {"capabilities": {s: list(ALL) for s in runc_wrapper.CAP_SETS}}}
    assert runc_wrapper.edit_document(spec, "spec", ["CAP_SYS_RESOURCE"])
    for name in runc_wrapper.CAP_SETS:
        granted = spec["process"]["capabilities"][name]
        assert "CAP_SYS_RESOURCE" not in granted and len(granted) == len(ALL) - 1
    process = {"args": ["sh"], "capabilities": {"bounding": ["CAP_SYS_RESOURCE", "CAP_KILL"]}}
    assert runc_wrapper.edit_document(process, "process", ["CAP_SYS_RESOURCE"])
    assert process["capabilities"] == {"bounding": ["CAP_KILL"]}
    untouched = {"process": {"capabilities": {"bounding": ["CAP_KILL"]}}}
    assert not runc_wrapper.edit_document(untouched, "spec", ["CAP_SYS_RESOURCE"])
    assert not runc_wrapper.edit_document({"process": {}}, "spec", ["CAP_SYS_RESOURCE"])


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_the_installed_script_edits_the_bundle_then_runs_the_real_runc(tmp_path: Path) -> None:
    """The script as engine.install_wrapper writes it, in front of a fake runc that records
    what it was given: what this host's bounding set lacks is gone, the rest is kept."""
    script = tmp_path / "runc-wrapper"
    script.write_text(engine.wrapper_script(sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    fake = tmp_path / "runc"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncp config.json {tmp_path}/seen\n')
    fake.chmod(0o755)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(
        json.dumps({"ociVersion": "1.0.2", "process": {"capabilities": {"bounding": ALL}}})
    )
    result = subprocess.run(
        [str(script), "--root", "/x", "create", "--bundle", str(bundle), "c1"],
        cwd=bundle,
        env={**os.environ, "REBOUND_REAL_RUNC": str(fake)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "args").read_text().split() == [
        "--root",
        "/x",
        "create",
        "--bundle",
        str(bundle),
        "c1",
    ]
    lacking = runc_wrapper.bounding_set_lacks(Path("/proc/self/status").read_text())
    seen = json.loads((tmp_path / "seen").read_text())["process"]["capabilities"]["bounding"]
    assert seen == [cap for cap in ALL if cap not in lacking]
