"""/dev in the container: default nodes, linux.devices, symlinks, console, user namespaces."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lowrun import mounts, rootfs
from lowrun import syscalls as sc
from tests.support.bundle import base_config
from tests.support.inchild import ChildFailed, read_mounts, run_in_child
from tests.support.rootfs import copy_rootfs

FLAGS = sc.CLONE_NEWPID | sc.CLONE_NEWNET | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS
DEFAULTS = {
    "null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
    "tty": (5, 0),
}


@pytest.fixture
def bundle(tmp_path: Path, busybox_rootfs: Path) -> Iterator[Path]:
    before = read_mounts()
    path = tmp_path / "bundle"
    path.mkdir()
    copy_rootfs(busybox_rootfs, path / "rootfs")
    yield path
    assert read_mounts() == before, "the host's mount table changed"


def dev_config(devices: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    config = base_config()
    config["mounts"] = config["mounts"][:3]  # /proc, /dev tmpfs, /dev/pts
    config["root"]["readonly"] = False
    config["linux"]["maskedPaths"] = []
    config["linux"]["readonlyPaths"] = []
    config["linux"]["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    if devices is not None:
        config["linux"]["devices"] = devices
    return config


def describe_dev() -> dict[str, Any]:
    """Every entry of /dev: type, major/minor, mode, owner, or the symlink's target."""
    facts: dict[str, Any] = {}
    for name in os.listdir("/dev"):
        st = os.lstat(f"/dev/{name}")
        if stat.S_ISLNK(st.st_mode):
            facts[name] = {"link": os.readlink(f"/dev/{name}")}
        else:
            facts[name] = {
                "type": stat.S_IFMT(st.st_mode),
                "major": os.major(st.st_rdev),
                "minor": os.minor(st.st_rdev),
                "mode": stat.S_IMODE(st.st_mode),
                "owner": [st.st_uid, st.st_gid],
            }
    return facts


def build_and_describe(
    config: dict[str, Any], bundle: Path, console: str | None = None
) -> dict[str, Any]:
    rootfs.prepare(config, str(bundle), "rootfs", console=console)
    rootfs.enter(str(bundle / "rootfs"))
    rootfs.finish(config)
    facts = describe_dev()
    with open("/proc/self/mountinfo") as f:
        facts["_mounts"] = {m.mountpoint: m.fstype for m in mounts.parse_mountinfo(f.read())}
    with open("/dev/null", "w") as f:
        facts["_null_writable"] = f.write("discarded") == 9
    with open("/dev/zero", "rb") as f:
        facts["_zero"] = f.read(4).hex()
    return facts


def test_default_devices_and_symlinks(bundle: Path) -> None:
    facts = run_in_child(lambda: build_and_describe(dev_config(), bundle), flags=FLAGS)
    for name, (major, minor) in DEFAULTS.items():
        node = facts[name]
        assert node["type"] == stat.S_IFCHR, name
        assert (node["major"], node["minor"]) == (major, minor), name
        assert node["mode"] == 0o666, name
        assert node["owner"] == [0, 0], name
    assert facts["fd"] == {"link": "/proc/self/fd"}
    assert facts["stdin"] == {"link": "/proc/self/fd/0"}
    assert facts["stdout"] == {"link": "/proc/self/fd/1"}
    assert facts["stderr"] == {"link": "/proc/self/fd/2"}
    assert facts["ptmx"] == {"link": "pts/ptmx"}
    assert ("core" in facts) == os.path.exists("/proc/kcore")  # only where the kernel has it
    assert facts["_null_writable"] is True
    assert facts["_zero"] == "00000000"
    assert facts["_mounts"]["/dev"] == "tmpfs"
    assert facts["_mounts"]["/dev/pts"] == "devpts"


def test_linux_devices(bundle: Path) -> None:
    devices = [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600},
        {"path": "/dev/mine", "type": "c", "major": 1, "minor": 5, "fileMode": 0o640,
         "uid": 1000, "gid": 5},
        {"path": "/dev/blk/loop7", "type": "b", "major": 7, "minor": 7, "fileMode": 0o660},
        {"path": "/dev/pipe", "type": "p", "fileMode": 0o620},
    ]

    def inside() -> dict[str, Any]:
        facts = build_and_describe(dev_config(devices), bundle)
        st = os.stat("/dev/blk/loop7")
        facts["loop7"] = [stat.S_IFMT(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev),
                          stat.S_IMODE(st.st_mode)]
        return facts

    facts = run_in_child(inside, flags=FLAGS)
    assert facts["null"]["mode"] == 0o600  # a configured path replaces the default
    assert facts["mine"] == {
        "type": stat.S_IFCHR, "major": 1, "minor": 5, "mode": 0o640, "owner": [1000, 5],
    }
    assert facts["loop7"] == [stat.S_IFBLK, 7, 7, 0o660]
    assert facts["pipe"]["type"] == stat.S_IFIFO and facts["pipe"]["mode"] == 0o620
    assert facts["zero"]["major"] == 1  # defaults still there


def test_existing_different_file_at_a_device_path_refused(bundle: Path) -> None:
    config = dev_config([{"path": "/etc/passwd", "type": "c", "major": 1, "minor": 3}])
    with pytest.raises(ChildFailed) as info:
        run_in_child(lambda: rootfs.prepare(config, str(bundle), "rootfs"), flags=FLAGS)
    assert info.value.kind == "ConfigError"
    assert info.value.message.startswith("$.linux.devices[0].path: ")
    assert (bundle / "rootfs" / "etc" / "passwd").read_text().startswith("root:")


def test_device_path_through_symlink_stays_inside(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside-dev"
    (bundle / "rootfs" / "devlink").symlink_to(outside)
    config = dev_config([{"path": "/devlink/null2", "type": "c", "major": 1, "minor": 3}])
    run_in_child(lambda: rootfs.prepare(config, str(bundle), "rootfs"), flags=FLAGS)
    assert not outside.exists()
    node = bundle / "rootfs" / str(outside).lstrip("/") / "null2"
    assert stat.S_ISCHR(node.lstat().st_mode)


def test_bad_device_config_is_a_config_error(bundle: Path) -> None:
    config = dev_config([{"path": "/dev/x", "type": "c", "minor": 3}])
    with pytest.raises(ChildFailed) as info:
        run_in_child(lambda: rootfs.prepare(config, str(bundle), "rootfs"), flags=FLAGS)
    assert info.value.kind == "ConfigError"
    assert info.value.message == "$.linux.devices[0].major: required"


def test_user_namespace_binds_devices_from_the_host(bundle: Path) -> None:
    """mknod is refused in a user namespace: the host's nodes are bound instead."""
    config = dev_config()
    config["mounts"] = [config["mounts"][1]]  # /dev tmpfs only: proc needs a pid namespace
    config["linux"]["namespaces"] = [{"type": "user"}, {"type": "mount"}]

    dev = f"{bundle}/rootfs/dev"

    def inside() -> dict[str, Any]:
        rootfs.prepare(config, str(bundle), "rootfs")
        with open("/proc/self/uid_map") as f:
            uid_map = f.read().split()
        with open("/proc/self/mountinfo") as f:
            info = mounts.parse_mountinfo(f.read())
        rootfs.enter(str(bundle / "rootfs"))
        rootfs.finish(config)
        facts = describe_dev()
        with open("/dev/null", "w") as f:
            facts["_null_writable"] = f.write("x") == 1
        facts["_uid_map"] = uid_map
        facts["_mounts"] = {
            m.mountpoint.replace(dev, "/dev"): m.fstype
            for m in info
            if m.mountpoint.startswith(dev)
        }
        return facts

    facts = run_in_child(inside, flags=0, userns=True)
    assert facts["_uid_map"] == ["0", str(os.geteuid()), "1"]
    for name, (major, minor) in DEFAULTS.items():
        assert facts[name]["type"] == stat.S_IFCHR, name
        assert (facts[name]["major"], facts[name]["minor"]) == (major, minor), name
        assert facts["_mounts"][f"/dev/{name}"] == "devtmpfs", name  # a bind of the host's
    assert facts["_null_writable"] is True


def test_console_is_bound_on_dev_console(bundle: Path) -> None:
    master, slave = os.openpty()
    try:
        slave_path = os.ttyname(slave)
        slave_rdev = os.stat(slave_path).st_rdev

        def inside() -> list[int]:
            rootfs.prepare(dev_config(), str(bundle), "rootfs", console=slave_path)
            rootfs.enter(str(bundle / "rootfs"))
            st = os.stat("/dev/console")
            return [stat.S_IFMT(st.st_mode), st.st_rdev]

        kind, rdev = run_in_child(inside, flags=FLAGS)
        assert kind == stat.S_IFCHR
        assert rdev == slave_rdev
    finally:
        os.close(master)
        os.close(slave)
    assert not (bundle / "rootfs" / "dev" / "console").exists()  # it lived in the /dev tmpfs


def test_dev_bound_from_host_gets_no_nodes(bundle: Path, tmp_path: Path) -> None:
    fake_dev = tmp_path / "fake-dev"
    fake_dev.mkdir()
    config = dev_config()
    config["mounts"][1] = {"destination": "/dev", "source": str(fake_dev), "options": ["rbind"]}
    del config["mounts"][2]
    run_in_child(lambda: rootfs.prepare(config, str(bundle), "rootfs"), flags=FLAGS)
    assert os.listdir(fake_dev) == []


def test_read_only_dev(bundle: Path) -> None:
    config = dev_config()
    config["mounts"][1]["options"].append("ro")

    def inside() -> dict[str, Any]:
        facts = build_and_describe(config, bundle)
        facts["_ro"] = bool(os.statvfs("/dev").f_flag & os.ST_RDONLY)
        return facts

    facts = run_in_child(inside, flags=FLAGS)
    assert facts["_ro"] is True
    assert facts["null"]["major"] == 1  # nodes were made before it became read-only
