"""runc 1.1 is the reference: the cgroups our manager computes are the ones runc creates.

Runs real runc containers (busybox `sleep`) with no cgroupsPath, an absolute and a
relative one, reads /proc/PID/cgroup of runc's init, and compares with the paths
`create_manager` gives for the same id and cgroupsPath. Also compares the device cgroup
runc leaves for the usual deny-all rule with what our manager leaves.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lowrun.cgroups import create_manager
from lowrun.cgroups.host import detect_host
from tests.support.bundle import base_config
from tests.support.runtime import Runtime

PREFIX = "berth-cgtest-"
ROOT = "/sys/fs/cgroup"

pytestmark = pytest.mark.skipif(
    shutil.which("runc") is None or os.geteuid() != 0 or not os.path.isdir(f"{ROOT}/memory"),
    reason="needs root, runc and this machine's v1 hierarchies",
)


def rmdir_up(path: str, top_name: str) -> None:
    """Remove `path` and its parents up to and including the one called `top_name`."""
    current = path
    while True:
        try:
            os.rmdir(current)
        except OSError as e:
            if e.errno not in (errno.ENOENT,):
                raise
        if os.path.basename(current) == top_name or current in ("/", ROOT):
            return
        current = os.path.dirname(current)


@pytest.fixture
def runc(tmp_path: Path) -> Iterator[Runtime]:
    binary = shutil.which("runc")
    assert binary is not None
    rt = Runtime(name="runc", binary=binary, root=tmp_path / "runc-root")
    try:
        yield rt
    finally:
        rt.cleanup()


def proc_cgroups(pid: int) -> dict[str, str]:
    result = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            result[name] = path
    return result


@pytest.mark.parametrize("kind", ["none", "absolute", "relative"])
def test_paths_match_what_runc_creates(runc, bundle_factory, kind) -> None:  # type: ignore[no-untyped-def]
    tag = PREFIX + uuid.uuid4().hex[:10]
    container_id = tag + "-ctr"
    cgroups_path = {"none": None, "absolute": f"/{tag}/abs", "relative": f"{tag}/rel"}[kind]
    config = base_config()
    if cgroups_path:
        config["linux"]["cgroupsPath"] = cgroups_path
    bundle = bundle_factory(["sleep", "1000"], config)
    ours = create_manager(container_id, cgroups_path).to_state()["paths"]
    host = detect_host()
    try:
        runc.run("run", "-d", "-b", str(bundle), container_id, check=True)
        pid = runc.state(container_id)["pid"]
        theirs = proc_cgroups(pid)
        for subsystem, path in ours.items():
            key = "" if subsystem == "unified" else subsystem
            mountpoint = host.hierarchies[subsystem].mountpoint
            assert path == mountpoint + theirs[key], subsystem
            assert os.path.isdir(path), subsystem
        # The other way round: every hierarchy runc joined, we join too.
        joined = {("unified" if k == "" else k) for k in theirs} & set(host.hierarchies)
        assert joined == set(ours)
    finally:
        runc.run("delete", "--force", container_id)
        for path in ours.values():
            top = tag if cgroups_path else container_id
            rmdir_up(path, top)
    assert not any(os.path.exists(p) for p in ours.values())


def test_device_cgroup_matches_runc(runc, bundle_factory) -> None:  # type: ignore[no-untyped-def]
    tag = PREFIX + uuid.uuid4().hex[:10]
    config = base_config()  # linux.resources.devices: deny all, as `runc spec` writes
    config["linux"]["cgroupsPath"] = f"/{tag}/runc"
    bundle = bundle_factory(["sleep", "1000"], config)
    ours = create_manager(tag + "-ours", f"/{tag}/ours")
    try:
        runc.run("run", "-d", "-b", str(bundle), tag + "-runc", check=True)
        theirs = Path(f"{ROOT}/devices/{tag}/runc/devices.list").read_text().split("\n")
        ours.set(config["linux"]["resources"])
        mine = Path(f"{ROOT}/devices/{tag}/ours/devices.list").read_text().split("\n")
        assert set(mine) == set(theirs)
        assert "a *:* rwm" not in mine
    finally:
        runc.run("delete", "--force", tag + "-runc")
        ours.destroy()
        for hierarchy in os.listdir(ROOT):
            for leaf in ("runc", "ours"):
                rmdir_up(f"{ROOT}/{hierarchy}/{tag}/{leaf}", tag)
