"""Mount destinations that try to leave the rootfs (CVE-2021-30465 and CVE-2019-16884 classes).

A bundle controls its rootfs, so any path component of a destination may be a symlink
meant to point the runtime at the host. Each test plants one, runs `prepare` in a
child with its own mount namespace, and checks both from inside (where the mount went)
and from the host (the path the symlink aimed at is untouched).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from lowrun import mounts, rootfs
from lowrun import syscalls as sc
from tests.support.bundle import base_config
from tests.support.inchild import ChildFailed, read_mounts, run_in_child
from tests.support.rootfs import copy_rootfs

FLAGS = sc.CLONE_NEWPID | sc.CLONE_NEWNET | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS


@pytest.fixture
def bundle(tmp_path: Path, busybox_rootfs: Path) -> Iterator[Path]:
    before = read_mounts()
    path = tmp_path / "bundle"
    path.mkdir()
    copy_rootfs(busybox_rootfs, path / "rootfs")
    yield path
    assert read_mounts() == before, "the host's mount table changed"


def config_with(*extra: dict[str, Any], proc: bool = True) -> dict[str, Any]:
    config = base_config()
    config["mounts"] = (config["mounts"][:2] if proc else config["mounts"][1:2]) + list(extra)
    config["root"]["readonly"] = False
    config["linux"]["maskedPaths"] = []
    config["linux"]["readonlyPaths"] = []
    config["linux"]["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    return config


def tmpfs_at(destination: str) -> dict[str, Any]:
    return {"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}


def prepare_and_list_mounts(config: dict[str, Any], bundle: Path) -> list[str]:
    """In the child: prepare only, then every mountpoint of the namespace (host paths)."""
    rootfs.prepare(config, str(bundle), "rootfs")
    with open("/proc/self/mountinfo") as f:
        return [m.mountpoint for m in mounts.parse_mountinfo(f.read())]


def snapshot(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_absolute_symlink_destination_stays_inside(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host file\n")
    root = bundle / "rootfs"
    (root / "evil").symlink_to(outside)  # absolute, to a host directory that exists
    (root / "evil2").symlink_to(tmp_path / "not-there")  # absolute, dangling
    config = config_with(
        tmpfs_at("/evil"),
        tmpfs_at("/evil2/deeper"),
        {"destination": "/evil/bound", "source": str(bundle), "options": ["bind", "ro"]},
    )
    points = run_in_child(lambda: prepare_and_list_mounts(config, bundle), flags=FLAGS)
    inside = str(root) + str(outside)
    assert inside in points
    assert str(root) + str(tmp_path / "not-there" / "deeper") in points
    assert f"{inside}/bound" in points
    assert not any(p == str(outside) or p.startswith(f"{outside}/") for p in points)
    assert snapshot(outside) == ["keep"]
    assert not (tmp_path / "not-there").exists()
    assert (root / str(tmp_path / "not-there" / "deeper").lstrip("/")).is_dir()


def test_relative_dotdot_symlink_destination_stays_inside(bundle: Path, tmp_path: Path) -> None:
    root = bundle / "rootfs"
    (root / "etc" / "up").symlink_to("../../../../../../../../outside")
    (root / "file-up").symlink_to("../../outside-file")
    data = tmp_path / "data.txt"
    data.write_text("bound\n")
    config = config_with(
        tmpfs_at("/etc/up/x"),
        {"destination": "/file-up", "source": str(data), "options": ["bind"]},
    )
    points = run_in_child(lambda: prepare_and_list_mounts(config, bundle), flags=FLAGS)
    assert f"{root}/outside/x" in points
    assert f"{root}/outside-file" in points
    assert not (tmp_path / "outside").exists()
    assert not (tmp_path / "outside-file").exists()
    assert not (bundle.parent.parent / "outside").exists()


def test_symlink_planted_by_an_earlier_mount(bundle: Path, tmp_path: Path) -> None:
    """The CVE-2021-30465 shape: a volume holds a symlink that a later destination crosses."""
    volume = tmp_path / "volume"
    volume.mkdir()
    target = tmp_path / "host-target"
    (volume / "link").symlink_to(target)
    config = config_with(
        {"destination": "/vol", "source": str(volume), "options": ["rbind"]},
        tmpfs_at("/vol/link/sub"),
    )
    points = run_in_child(lambda: prepare_and_list_mounts(config, bundle), flags=FLAGS)
    assert not target.exists()
    assert not any(p.startswith(str(target)) for p in points)
    assert f"{bundle / 'rootfs'}{target}/sub" in points


def test_symlink_loop_destination_fails_and_names_the_mount(bundle: Path) -> None:
    root = bundle / "rootfs"
    (root / "loop-a").symlink_to("loop-b")
    (root / "loop-b").symlink_to("loop-a")
    config = config_with(tmpfs_at("/loop-a/x"))
    with pytest.raises(ChildFailed) as info:
        run_in_child(lambda: rootfs.prepare(config, str(bundle), "rootfs"), flags=FLAGS)
    assert info.value.kind == "MountError"
    assert info.value.message.startswith("$.mounts[2] (/loop-a/x): ")
    assert "Too many levels of symbolic links" in info.value.message


@pytest.mark.parametrize("fstype", ["proc", "sysfs"])
def test_proc_and_sys_destination_symlink_refused(
    bundle: Path, tmp_path: Path, fstype: str
) -> None:
    """CVE-2019-16884 class: /proc (or /sys) replaced by a symlink to a directory of fakes."""
    root = bundle / "rootfs"
    fake = root / "fake"
    (fake / "self" / "attr").mkdir(parents=True)
    dest = "proc" if fstype == "proc" else "sys"
    (root / dest).rmdir()
    (root / dest).symlink_to("/fake")
    config = config_with({"destination": f"/{dest}", "type": fstype, "source": fstype}, proc=False)
    with pytest.raises(ChildFailed) as info:
        run_in_child(lambda: prepare_and_list_mounts(config, bundle), flags=FLAGS)
    assert info.value.kind == "ConfigError"
    assert info.value.message.startswith("$.mounts[1].destination: ")
    assert "symlink" in info.value.message
    assert sorted(os.listdir(fake)) == ["self"]


def test_proc_destination_through_a_symlinked_parent_refused(bundle: Path) -> None:
    root = bundle / "rootfs"
    (root / "real").mkdir()
    (root / "alias").symlink_to("real")
    config = config_with({"destination": "/alias/proc", "type": "proc", "source": "proc"})
    with pytest.raises(ChildFailed) as info:
        run_in_child(lambda: prepare_and_list_mounts(config, bundle), flags=FLAGS)
    assert info.value.kind == "ConfigError"
    assert not (root / "real" / "proc").exists()


def test_proc_destination_not_a_directory_refused(bundle: Path) -> None:
    root = bundle / "rootfs"
    (root / "proc").rmdir()
    (root / "proc").write_text("not a directory\n")
    config = config_with()
    with pytest.raises(ChildFailed) as info:
        run_in_child(lambda: prepare_and_list_mounts(config, bundle), flags=FLAGS)
    assert info.value.kind == "ConfigError"
    assert "must be mounted on a directory" in info.value.message


def test_mounts_into_proc_refused(bundle: Path, tmp_path: Path) -> None:
    """Nothing but proc on /proc, and inside it only the files lxcfs emulates."""
    root = bundle / "rootfs"
    (root / "sneaky").symlink_to("/proc/sys/kernel")
    fake = tmp_path / "fake-cpuinfo"
    fake.write_text("processor : 0\n")
    cases = {
        "tmpfs over /proc": config_with(tmpfs_at("/proc"), proc=False),
        "tmpfs inside /proc": config_with(tmpfs_at("/proc/sys")),
        "through a symlink": config_with(tmpfs_at("/sneaky")),
    }
    for name, config in cases.items():
        with pytest.raises(ChildFailed) as info:
            run_in_child(partial(prepare_and_list_mounts, config, bundle), flags=FLAGS)
        assert info.value.kind == "ConfigError", name
        assert "/proc" in info.value.message, name
    allowed = config_with(
        {"destination": "/proc/cpuinfo", "source": str(fake), "options": ["bind"]}
    )

    def read_cpuinfo() -> str:
        rootfs.prepare(allowed, str(bundle), "rootfs")
        return (root / "proc" / "cpuinfo").read_text()

    assert run_in_child(read_cpuinfo, flags=FLAGS) == "processor : 0\n"


def test_masked_path_through_symlink_resolves_in_the_new_root(bundle: Path) -> None:
    """maskedPaths are resolved after pivot_root, inside the container's root."""
    root = bundle / "rootfs"
    (root / "etc" / "secret").write_text("inside\n")
    (root / "mask-me").symlink_to("../../../../../../etc/secret")
    config = config_with()
    config["linux"]["maskedPaths"] = ["/mask-me"]

    def inside() -> dict[str, Any]:
        rootfs.prepare(config, str(bundle), "rootfs")
        rootfs.enter(str(root))
        rootfs.finish(config)
        with open("/proc/self/mountinfo") as f:
            points = [m.mountpoint for m in mounts.parse_mountinfo(f.read())]
        return {"points": points, "secret": Path("/etc/secret").read_text()}

    facts = run_in_child(inside, flags=FLAGS)
    assert "/etc/secret" in facts["points"]
    assert facts["secret"] == ""
    assert (root / "etc" / "secret").read_text() == "inside\n"
