"""lowrun.rootfs against the real kernel: each mount type, its options, pivot and no-pivot.

Each test runs prepare/enter/finish in a forked child with its own mount namespace
(tests/support/inchild.py) on a private copy of the busybox rootfs, and asserts on
what the child saw from inside. The host's mount table must be the same afterwards.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lowrun import mounts, rootfs
from lowrun import syscalls as sc
from lowrun.cgroups.host import parse_proc_cgroup
from tests.support.bundle import base_config
from tests.support.inchild import ChildFailed, read_mounts, run_in_child
from tests.support.rootfs import copy_rootfs

CONTAINER = sc.CLONE_NEWPID | sc.CLONE_NEWNET | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS


@pytest.fixture
def bundle(tmp_path: Path, busybox_rootfs: Path) -> Iterator[Path]:
    before = read_mounts()
    path = tmp_path / "bundle"
    path.mkdir()
    copy_rootfs(busybox_rootfs, path / "rootfs")
    yield path
    assert read_mounts() == before, "the host's mount table changed"


def minimal_config(*extra: dict[str, Any]) -> dict[str, Any]:
    """Just /proc and /dev plus `extra` mounts; mount, pid, ipc, net, uts namespaces."""
    config = base_config()
    config["mounts"] = config["mounts"][:2] + list(extra)
    config["root"]["readonly"] = False
    config["linux"]["maskedPaths"] = []
    config["linux"]["readonlyPaths"] = []
    config["linux"]["namespaces"] = [
        {"type": t} for t in ("pid", "network", "ipc", "uts", "mount")
    ]
    return config


def build(config: dict[str, Any], bundle: Path, no_pivot: bool = False) -> None:
    rootfs.prepare(config, str(bundle), "rootfs")
    rootfs.enter(str(bundle / "rootfs"), no_pivot=no_pivot)
    rootfs.finish(config)


def mountinfo() -> dict[str, mounts.MountInfo]:
    """This process's mounts by mountpoint (the last one on a path wins)."""
    with open("/proc/self/mountinfo") as f:
        return {m.mountpoint: m for m in mounts.parse_mountinfo(f.read())}


def mount_options() -> dict[str, list[str]]:
    """mountpoint -> per-mount options (field 6 of mountinfo) + super options."""
    result = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            result[fields[4]] = fields[5].split(",") + fields[sep + 3].split(",")
    return result


@pytest.mark.parametrize("no_pivot", [False, True], ids=["pivot", "no-pivot"])
def test_runc_default_mounts(bundle: Path, no_pivot: bool) -> None:
    config = base_config()  # runc spec's mounts, masked and read-only paths, readonly root
    config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}

    def inside() -> dict[str, Any]:
        build(config, bundle, no_pivot=no_pivot)
        info = mountinfo()
        facts: dict[str, Any] = {
            "types": {p: m.fstype for p, m in info.items()},
            "options": mount_options(),
            "cgroup_dirs": sorted(os.listdir("/sys/fs/cgroup")),
            "shm_mode": stat.S_IMODE(os.stat("/dev/shm").st_mode),
            "shm_size": os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize,
            "pid1": os.readlink("/proc/self"),
            "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
            "shmmni": Path("/proc/sys/kernel/shmmni").read_text().strip(),
        }
        for path in ("/etc/new", "/sys/x", "/proc/sys/kernel/shmmni"):
            try:
                with open(path, "w") as f:
                    f.write("1")
                facts[path] = "written"
            except OSError as exc:
                facts[path] = errno.errorcode[exc.errno or 0]
        return facts

    host_shmmni = Path("/proc/sys/kernel/shmmni").read_text()
    facts = run_in_child(inside, flags=CONTAINER | sc.CLONE_NEWCGROUP)
    types = facts["types"]
    assert types["/"] == "ext4"
    assert types["/proc"] == "proc"
    assert types["/dev"] == "tmpfs"
    assert types["/dev/pts"] == "devpts"
    assert types["/dev/shm"] == "tmpfs"
    assert types["/dev/mqueue"] == "mqueue"
    assert types["/sys"] == "sysfs"
    assert types["/sys/fs/cgroup"] == "tmpfs"
    options = facts["options"]
    assert "ro" in options["/"]  # root.readonly
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(options["/sys"])
    assert {"nosuid", "nodev", "noexec", "size=65536k"} <= set(options["/dev/shm"])
    assert {"ptmxmode=666", "mode=620", "noexec"} <= set(options["/dev/pts"])
    assert "ro" in options["/sys/fs/cgroup"]
    assert facts["shm_mode"] == 0o1777
    assert facts["shm_size"] == 65536 * 1024
    assert facts["pid1"] == "1"
    # one directory per v1 hierarchy of the host, each a cgroup mount, read-only
    with open("/proc/self/mountinfo") as f:
        host_v1 = sorted(
            os.path.basename(m.mountpoint)
            for m in mounts.parse_mountinfo(f.read())
            if m.fstype == "cgroup"
        )
    assert facts["cgroup_dirs"] == host_v1
    for name in host_v1:
        assert types[f"/sys/fs/cgroup/{name}"] == "cgroup"
        assert "ro" in options[f"/sys/fs/cgroup/{name}"]
    # masked and read-only paths that this kernel has
    assert types.get("/sys/firmware") == "tmpfs" and "ro" in options["/sys/firmware"]
    assert "ro" in options["/proc/sys"]
    # sysctls were written in the container's own namespaces, then /proc/sys made ro
    assert facts["ip_forward"] == "1"
    assert facts["shmmni"] == "1234"
    assert Path("/proc/sys/kernel/shmmni").read_text() == host_shmmni
    assert facts["/etc/new"] == "EROFS"
    assert facts["/sys/x"] == "EROFS"
    assert facts["/proc/sys/kernel/shmmni"] == "EROFS"
    assert not (bundle / "rootfs" / "etc" / "new").exists()


def test_masked_paths_are_unreadable(bundle: Path) -> None:
    config = minimal_config()
    config["linux"]["maskedPaths"] = ["/proc/timer_list", "/proc/acpi", "/proc/nonexistent"]
    config["linux"]["readonlyPaths"] = ["/proc/bus"]

    def inside() -> dict[str, Any]:
        build(config, bundle)
        return {
            "timer_list": Path("/proc/timer_list").read_text(),
            "acpi": os.listdir("/proc/acpi"),
            "acpi_type": mountinfo()["/proc/acpi"].fstype,
            "acpi_writable": os.access("/proc/acpi", os.W_OK),
            "bus_ro": "ro" in mount_options()["/proc/bus"],
        }

    assert Path("/proc/timer_list").read_text() != ""  # the host's is not empty
    facts = run_in_child(inside, flags=CONTAINER)
    assert facts["timer_list"] == ""
    assert facts["acpi"] == []
    assert facts["acpi_type"] == "tmpfs"
    assert facts["acpi_writable"] is False
    assert facts["bus_ro"] is True


def test_bind_ro_is_really_read_only(bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("host data\n")
    single = tmp_path / "single.txt"
    single.write_text("one file\n")
    config = minimal_config(
        {"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "ro"]},
        {"destination": "/rw", "source": str(data), "options": ["bind", "nosuid", "nodev"]},
        {"destination": "/etc/single.txt", "source": str(single), "options": ["bind", "ro"]},
    )

    def inside() -> dict[str, Any]:
        build(config, bundle)
        facts: dict[str, Any] = {"read": Path("/data/f").read_text(), "options": mount_options()}
        try:
            Path("/data/f").write_text("overwritten\n")
        except OSError as exc:
            facts["write"] = errno.errorcode[exc.errno or 0]
        Path("/rw/new").write_text("from inside\n")
        facts["single"] = Path("/etc/single.txt").read_text()
        facts["single_is_file"] = os.path.isfile("/etc/single.txt")
        return facts

    facts = run_in_child(inside, flags=CONTAINER)
    assert facts["read"] == "host data\n"
    assert facts["write"] == "EROFS"
    assert (data / "f").read_text() == "host data\n"
    assert (data / "new").read_text() == "from inside\n"
    assert "ro" in facts["options"]["/data"]
    assert {"rw", "nosuid", "nodev"} <= set(facts["options"]["/rw"])
    assert facts["single"] == "one file\n" and facts["single_is_file"]
    assert "ro" in facts["options"]["/etc/single.txt"]


def test_bind_source_relative_to_bundle(bundle: Path) -> None:
    (bundle / "vol").mkdir()
    (bundle / "vol" / "marker").write_text("bundle-relative\n")
    config = minimal_config({"destination": "/mnt/vol", "source": "vol", "options": ["bind"]})

    def inside() -> str:
        build(config, bundle)
        return Path("/mnt/vol/marker").read_text()

    assert run_in_child(inside, flags=CONTAINER) == "bundle-relative\n"


def test_bind_rbind_and_recursive_read_only(bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    config = minimal_config(
        {"destination": "/plain", "source": str(src), "options": ["bind"]},
        {"destination": "/rec", "source": str(src), "options": ["rbind", "ro"]},
        {"destination": "/rro", "source": str(src), "options": ["rbind", "rro"]},
    )

    def inside() -> dict[str, Any]:
        # a submount on the host side of the source, made in the child's namespace only
        sc.mount("tmpfs", str(src / "sub"), "tmpfs", 0, "size=1m")
        Path(src / "sub" / "in-submount").write_text("x")
        build(config, bundle)
        facts: dict[str, Any] = {p: os.listdir(f"{p}/sub") for p in ("/plain", "/rec", "/rro")}
        for p in ("/rec", "/rro"):
            try:
                Path(f"{p}/sub/w").write_text("w")
                facts[f"{p} write"] = "ok"
            except OSError as exc:
                facts[f"{p} write"] = errno.errorcode[exc.errno or 0]
        return facts

    facts = run_in_child(inside, flags=CONTAINER)
    assert facts["/plain"] == []  # bind: the submount is not carried over
    assert facts["/rec"] == ["in-submount"]
    assert facts["/rro"] == ["in-submount"]
    assert facts["/rec write"] == "ok"  # `ro` is not recursive: the submount stays writable
    assert facts["/rro write"] == "EROFS"


def test_tmpfs_options(bundle: Path) -> None:
    config = minimal_config(
        {
            "destination": "/scratch",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "noexec", "nodev", "size=1m", "mode=700", "uid=12", "gid=34"],
        },
        {"destination": "/ro-tmp", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]},
    )

    def inside() -> dict[str, Any]:
        build(config, bundle)
        st = os.stat("/scratch")
        vfs = os.statvfs("/scratch")
        return {
            "mode": stat.S_IMODE(st.st_mode),
            "owner": [st.st_uid, st.st_gid],
            "size": vfs.f_blocks * vfs.f_frsize,
            "flags": vfs.f_flag,
            "ro_flags": os.statvfs("/ro-tmp").f_flag,
        }

    facts = run_in_child(inside, flags=CONTAINER)
    assert facts["mode"] == 0o700
    assert facts["owner"] == [12, 34]
    assert facts["size"] == 1024 * 1024
    for flag in (os.ST_NOSUID, os.ST_NOEXEC, os.ST_NODEV):
        assert facts["flags"] & flag
    assert not facts["flags"] & os.ST_RDONLY
    assert facts["ro_flags"] & os.ST_RDONLY


def test_propagation_options(bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "shared-src"
    src.mkdir()
    config = minimal_config(
        {"destination": "/shared", "source": str(src), "options": ["rbind", "rshared"]},
        {"destination": "/private", "source": str(src), "options": ["rbind", "rprivate"]},
        {"destination": "/unbind", "source": str(src), "options": ["bind", "unbindable"]},
    )

    def inside() -> dict[str, list[str]]:
        build(config, bundle)
        return {p: list(m.optional) for p, m in mountinfo().items()}

    optional = run_in_child(inside, flags=CONTAINER)
    assert any(o.startswith("shared:") for o in optional["/shared"])
    assert optional["/private"] == []
    assert optional["/unbind"] == ["unbindable"]


def test_cgroup_v1_without_cgroupns_binds_own_cgroups(bundle: Path) -> None:
    config = minimal_config(
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    )

    def inside() -> dict[str, Any]:
        with open("/proc/self/cgroup") as f:
            own = parse_proc_cgroup(f.read())
        build(config, bundle)
        info = mountinfo()
        return {
            "own": own,
            "binds": {
                p: [m.root, m.fstype, list(m.super_options)]
                for p, m in info.items()
                if p.startswith("/sys/fs/cgroup/")
            },
        }

    facts = run_in_child(inside, flags=CONTAINER)
    own = facts["own"]
    assert facts["binds"], "no cgroup hierarchy was mounted"
    for path, (root, fstype, super_options) in facts["binds"].items():
        assert fstype == "cgroup"
        subsystems = [o for o in super_options if o in mounts.V1_CONTROLLERS or "name=" in o]
        assert root == own[subsystems[0]], path  # the container's own cgroup, not the root


def test_pivot_root_leaves_no_way_back(bundle: Path, tmp_path: Path) -> None:
    """After pivot_root the host's root is gone from the namespace; after --no-pivot it is
    only covered: a process with CAP_SYS_ADMIN there uncovers it (why runc and lowrun
    call --no-pivot weaker)."""
    marker = tmp_path / "host-only-marker"
    marker.write_text("host")
    config = minimal_config()

    def uncover(no_pivot: bool) -> dict[str, Any]:
        build(config, bundle, no_pivot=no_pivot)
        facts: dict[str, Any] = {"root": sorted(os.listdir("/"))}
        facts["marker_before"] = os.path.exists(str(marker))
        ns = os.open("/proc/self/ns/mnt", os.O_RDONLY)
        sc.umount2("/", sc.MNT_DETACH)
        sc.setns(ns, sc.CLONE_NEWNS)  # back to the namespace's own root
        facts["marker_after"] = os.path.exists(str(marker))
        return facts

    pivoted = run_in_child(lambda: uncover(False), flags=CONTAINER)
    moved = run_in_child(lambda: uncover(True), flags=CONTAINER)
    expected = sorted(os.listdir(bundle / "rootfs"))
    assert pivoted["root"] == expected
    assert moved["root"] == expected
    assert pivoted["marker_before"] is False and moved["marker_before"] is False
    assert pivoted["marker_after"] is False
    assert moved["marker_after"] is True


def test_rootfs_propagation_shared(bundle: Path) -> None:
    config = minimal_config()
    config["linux"]["rootfsPropagation"] = "rshared"

    def inside() -> list[str]:
        build(config, bundle)
        return list(mountinfo()["/"].optional)

    optional = run_in_child(inside, flags=CONTAINER)
    assert any(o.startswith("shared:") for o in optional)


def test_default_root_propagation_is_slave(bundle: Path) -> None:
    """rslave by default: host mounts reach the container, the container's never the host."""
    config = minimal_config()

    def inside() -> list[str]:
        rootfs.prepare(config, str(bundle), "rootfs")
        with open("/proc/self/mountinfo") as f:
            info = mounts.parse_mountinfo(f.read())
        return [m.mountpoint for m in info if m.optional and "shared:" in m.optional[0]]

    assert run_in_child(inside, flags=CONTAINER) == []


def test_mount_failure_names_the_mount(bundle: Path) -> None:
    config = minimal_config(
        {"destination": "/data", "type": "nosuchfs", "source": "none"},
    )
    with pytest.raises(ChildFailed) as info:
        run_in_child(lambda: build(config, bundle), flags=CONTAINER)
    assert info.value.kind == "MountError"
    assert info.value.message == "$.mounts[2] (/data): mount: No such device"
    assert info.value.errno == errno.ENODEV


def test_missing_bind_source_is_a_config_error(bundle: Path, tmp_path: Path) -> None:
    config = minimal_config(
        {"destination": "/data", "source": str(tmp_path / "absent"), "options": ["bind"]},
    )
    with pytest.raises(ChildFailed) as info:
        run_in_child(lambda: build(config, bundle), flags=CONTAINER)
    assert info.value.kind == "ConfigError"
    assert info.value.message.startswith("$.mounts[2].source: ")
    assert not (bundle / "rootfs" / "data").exists()


def test_bad_config_fails_before_any_mount(bundle: Path) -> None:
    config = minimal_config({"destination": "/x", "type": "tmpfs", "options": ["tmpcopyup"]})
    config["linux"]["sysctl"] = {"kernel.panic": "1"}

    def inside() -> None:
        before = Path("/proc/self/mountinfo").read_text()
        try:
            rootfs.prepare(config, str(bundle), "rootfs")
        finally:
            assert Path("/proc/self/mountinfo").read_text() == before

    with pytest.raises(ChildFailed) as info:
        run_in_child(inside, flags=CONTAINER)
    assert info.value.kind == "ConfigError"
    assert "$.mounts[2].options[0]" in info.value.message


def test_cgroup2_mount_and_its_bind_fallback(bundle: Path) -> None:
    """cgroup2 mounted afresh; where the kernel refuses (a user namespace without a cgroup
    namespace), the container's own cgroup2 directory is bound from the host instead."""
    cgroup2 = {"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup2",
               "options": ["nosuid", "noexec", "nodev", "ro"]}
    config = minimal_config(cgroup2)

    def inside(cfg: dict[str, Any], cgroup: Path | None = None) -> dict[str, Any]:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        rootfs.prepare(cfg, str(bundle), "rootfs")
        with open("/proc/self/mountinfo") as f:
            info = {m.mountpoint: m for m in mounts.parse_mountinfo(f.read())}
        m = info[f"{bundle}/rootfs/sys/fs/cgroup"]
        return {"fstype": m.fstype, "root": m.root, "options": mount_options()[m.mountpoint],
                "files": sorted(os.listdir(f"{bundle}/rootfs/sys/fs/cgroup"))}

    fresh = run_in_child(lambda: inside(config), flags=CONTAINER)
    assert fresh["fstype"] == "cgroup2"
    assert "ro" in fresh["options"]
    assert "cgroup.procs" in fresh["files"]

    userns_config = minimal_config(cgroup2)
    userns_config["mounts"] = [userns_config["mounts"][1], cgroup2]  # no proc: no pid ns
    userns_config["linux"]["namespaces"] = [{"type": "user"}, {"type": "mount"}]
    with open("/proc/self/mountinfo") as f:
        unified = next(m for m in mounts.parse_mountinfo(f.read()) if m.fstype == "cgroup2")
    own = Path(unified.mountpoint) / f"berth-rootfs-test-{os.getpid()}-{id(bundle)}"
    own.mkdir()
    try:
        bound = run_in_child(lambda: inside(userns_config, own), flags=0, userns=True)
    finally:
        own.rmdir()
    assert bound["fstype"] == "cgroup2"
    assert bound["root"] == "/" + own.name  # a bind of the child's own cgroup
    assert "ro" in bound["options"]
