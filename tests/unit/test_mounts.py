"""Mount option parsing, mount entries, mountinfo, the cgroup v1 plan, devices and sysctls."""

from __future__ import annotations

import errno

import pytest

from lowrun import devices, mounts, rootfs
from lowrun import syscalls as sc
from lowrun.cgroups.host import parse_proc_cgroup
from lowrun.errors import ConfigError, SyscallError
from lowrun.mounts import MountError, parse_mount, parse_options


def test_flags_set_and_cleared_in_order() -> None:
    opts = parse_options(["ro", "nosuid", "nodev", "noexec"])
    assert opts.flags == sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    assert parse_options(["ro", "rw"]).flags == 0
    assert parse_options(["rw", "ro"]).flags == sc.MS_RDONLY
    assert parse_options(["nosuid", "suid", "strictatime"]).flags == sc.MS_STRICTATIME
    assert parse_options(["defaults"]).flags == 0


def test_bind_and_rbind() -> None:
    bind = parse_options(["bind", "ro"])
    assert bind.is_bind and not bind.recursive_bind
    assert bind.flags == sc.MS_BIND | sc.MS_RDONLY
    rbind = parse_options(["rbind"])
    assert rbind.is_bind and rbind.recursive_bind
    assert rbind.flags == sc.MS_BIND | sc.MS_REC


def test_unknown_options_go_to_data_in_order() -> None:
    opts = parse_options(["nosuid", "mode=755", "size=65536k", "newinstance", "ptmxmode=0666"])
    assert opts.flags == sc.MS_NOSUID
    assert opts.data == "mode=755,size=65536k,newinstance,ptmxmode=0666"
    assert parse_options(None).data == ""


def test_propagation_options_kept_apart_in_order() -> None:
    opts = parse_options(["rbind", "rprivate", "shared", "runbindable"])
    assert opts.propagation == (
        sc.MS_PRIVATE | sc.MS_REC,
        sc.MS_SHARED,
        sc.MS_UNBINDABLE | sc.MS_REC,
    )
    assert opts.flags == sc.MS_BIND | sc.MS_REC
    assert opts.data == ""


def test_recursive_attributes() -> None:
    opts = parse_options(["rbind", "rro", "rnosuid"])
    assert opts.attr_set == sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID
    assert opts.attr_clr == 0
    assert opts.flags == sc.MS_BIND | sc.MS_REC  # nothing for the plain remount
    assert parse_options(["rro", "rrw"]).attr_set == 0
    assert parse_options(["rro", "rrw"]).attr_clr == sc.MOUNT_ATTR_RDONLY
    atime = parse_options(["rnoatime"])
    assert atime.attr_set == sc.MOUNT_ATTR_NOATIME
    assert atime.attr_clr == sc.MOUNT_ATTR__ATIME  # the kernel wants the whole field cleared


def test_refused_and_malformed_options_name_their_place() -> None:
    with pytest.raises(ConfigError) as info:
        parse_options(["mode=755", "tmpcopyup"], "$.mounts[4].options")
    assert info.value.where == "$.mounts[4].options[1]"
    assert "tmpcopyup" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_options(["ro", 3], "$.mounts[0].options")  # type: ignore[list-item]
    assert info.value.where == "$.mounts[0].options[1]"


def test_rootfs_propagation_values() -> None:
    assert mounts.propagation_flags("rslave") == sc.MS_SLAVE | sc.MS_REC
    assert mounts.propagation_flags("private") == sc.MS_PRIVATE
    with pytest.raises(ConfigError) as info:
        mounts.propagation_flags("sideways")
    assert info.value.where == "$.linux.rootfsPropagation"
    assert "rshared" in info.value.problem


def test_clean_path() -> None:
    assert mounts.clean_path("/a/../b/") == "/b"
    assert mounts.clean_path("relative/x") == "/relative/x"
    assert mounts.clean_path("/../../etc") == "/etc"
    assert mounts.clean_path("/") == "/"


def test_parse_mount_bind_source_is_bundle_relative() -> None:
    spec = parse_mount(
        {"destination": "/data/", "source": "vol", "options": ["rbind", "ro"]}, 3, "/b"
    )
    assert spec.kind == "bind"
    assert spec.source == "/b/vol"
    assert spec.destination == "/data"
    assert spec.label() == "$.mounts[3] (/data)"
    typed = parse_mount({"destination": "/x", "type": "bind", "source": "/srv"}, 0, "/b")
    assert typed.kind == "bind" and typed.options.flags & sc.MS_BIND
    assert typed.source == "/srv"


def test_parse_mount_filesystems() -> None:
    spec = parse_mount({"destination": "/proc", "type": "proc"}, 0, "/b")
    assert (spec.kind, spec.fstype, spec.source) == ("proc", "proc", "proc")
    shm = parse_mount({"destination": "/dev/shm", "type": "tmpfs", "source": "shm"}, 1, "/b")
    assert shm.source == "shm"


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"type": "tmpfs"}, "$.mounts[2].destination"),
        ({"destination": "", "type": "tmpfs"}, "$.mounts[2].destination"),
        ({"destination": "/x"}, "$.mounts[2].type"),
        ({"destination": "/x", "options": ["bind"]}, "$.mounts[2].source"),
        ({"destination": "/x", "type": 7}, "$.mounts[2].type"),
        ("not an object", "$.mounts[2]"),
    ],
)
def test_parse_mount_errors(entry: object, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_mount(entry, 2, "/b")
    assert info.value.where == where


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime master:7 - cgroup cgroup rw,memory
36 31 0:33 /outer /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids,clone_children
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 27 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
"""

PROC_CGROUP = """\
9:name=systemd:/user.slice
8:pids:/outer/inner
4:memory:/process_api/abc
2:cpu,cpuacct:/
0::/
"""


def test_parse_mountinfo() -> None:
    entries = mounts.parse_mountinfo(MOUNTINFO)
    assert len(entries) == 9
    root = entries[1]
    assert (root.mount_id, root.parent_id, root.mountpoint, root.fstype) == (27, 1, "/", "ext4")
    assert root.optional == ("shared:1",)
    assert entries[3].super_options == ("rw", "cpu", "cpuacct")
    assert entries[-1].mountpoint == "/mnt/with space"


def test_mount_containing_takes_the_longest_match() -> None:
    entries = mounts.parse_mountinfo(MOUNTINFO)
    assert mounts.mount_containing(entries, "/srv/bundle/rootfs").mount_id == 27
    assert mounts.mount_containing(entries, "/sys/fs/cgroup/memory/x").mount_id == 35
    assert mounts.mount_containing(entries, "/sys/fs/cgroupx").mount_id == 27
    assert mounts.mount_containing(entries, "/mnt/with space/a").mount_id == 50


def test_cgroup_v1_plan_binds_own_cgroup_per_hierarchy() -> None:
    plan = mounts.cgroup_v1_plan(mounts.parse_mountinfo(MOUNTINFO), PROC_CGROUP)
    by_name = {p.name: p for p in plan}
    assert list(by_name) == ["cpu,cpuacct", "memory", "pids", "systemd"]  # no cgroup2 entry
    assert by_name["cpu,cpuacct"].source == "/sys/fs/cgroup/cpu,cpuacct"
    assert by_name["cpu,cpuacct"].data == "cpu,cpuacct"
    assert by_name["memory"].source == "/sys/fs/cgroup/memory/process_api/abc"
    # the host mounts the pids hierarchy from /outer: the path is relative to that root
    assert by_name["pids"].source == "/sys/fs/cgroup/pids/inner"
    assert by_name["systemd"].data == "name=systemd"
    assert by_name["systemd"].source == "/sys/fs/cgroup/systemd/user.slice"
    assert mounts.comount_links(plan) == [("cpu", "cpu,cpuacct"), ("cpuacct", "cpu,cpuacct")]


def test_parse_proc_cgroup() -> None:
    paths = parse_proc_cgroup(PROC_CGROUP)
    assert paths["cpu"] == paths["cpuacct"] == "/"
    assert paths["name=systemd"] == "/user.slice"
    assert paths[""] == "/"


def test_mount_error_names_the_mount() -> None:
    err = MountError(errno.ENOENT, "mount", "$.mounts[3] (/data)", "src on /proc/self/fd/9")
    assert str(err) == "$.mounts[3] (/data): mount: No such file or directory"
    assert isinstance(err, SyscallError) and err.errno == errno.ENOENT


def test_devices_defaults_and_override() -> None:
    config = {
        "linux": {
            "devices": [
                {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600},
                {"path": "/dev/fifo", "type": "p"},
                {"path": "/dev/loop0", "type": "b", "major": 7, "minor": 0, "uid": 5, "gid": 6},
            ]
        }
    }
    found = {d.path: d for d in devices.devices_for(config)}
    assert set(found) == {
        "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
        "/dev/null", "/dev/fifo", "/dev/loop0",
    }
    assert found["/dev/null"].mode == 0o600
    assert found["/dev/null"].label == "$.linux.devices[0] (/dev/null)"
    assert found["/dev/tty"].major == 5 and found["/dev/tty"].mode == 0o666
    assert (found["/dev/loop0"].uid, found["/dev/loop0"].gid) == (5, 6)
    assert found["/dev/fifo"].rdev == 0


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"type": "c", "major": 1, "minor": 3}, "$.linux.devices[0].path"),
        ({"path": "dev/x", "type": "c", "major": 1, "minor": 3}, "$.linux.devices[0].path"),
        ({"path": "/dev/x", "type": "q", "major": 1, "minor": 3}, "$.linux.devices[0].type"),
        ({"path": "/dev/x", "type": "c", "minor": 3}, "$.linux.devices[0].major"),
        ({"path": "/dev/x", "type": "c", "major": -1, "minor": 3}, "$.linux.devices[0].major"),
        ({"path": "/dev/x", "type": "b", "major": 1, "minor": "3"}, "$.linux.devices[0].minor"),
        (
            {"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o60644},
            "$.linux.devices[0].fileMode",
        ),
    ],
)
def test_device_errors(entry: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        devices.devices_for({"linux": {"devices": [entry]}})
    assert info.value.where == where


def _sysctl_config(sysctl: dict[str, object], *namespaces: str) -> dict[str, object]:
    return {"linux": {"sysctl": sysctl, "namespaces": [{"type": t} for t in namespaces]}}


def test_sysctl_paths_for_namespaced_keys() -> None:
    config = _sysctl_config(
        {
            "net.ipv4.ip_forward": "1",
            "kernel.shmmax": "1000",
            "fs.mqueue.msg_max": "20",
            "net/ipv4/conf/eth0.1/rp_filter": "0",
        },
        "network", "ipc",
    )
    paths = rootfs.sysctl_paths(config)
    assert paths["net.ipv4.ip_forward"] == ("/proc/sys/net/ipv4/ip_forward", "1")
    assert paths["kernel.shmmax"] == ("/proc/sys/kernel/shmmax", "1000")
    assert paths["net/ipv4/conf/eth0.1/rp_filter"][0] == "/proc/sys/net/ipv4/conf/eth0.1/rp_filter"


@pytest.mark.parametrize(
    ("key", "namespaces", "problem"),
    [
        ("kernel.panic", ("ipc", "network", "uts"), "not namespaced"),
        ("net.ipv4.ip_forward", ("ipc",), "network namespace"),
        ("kernel.msgmax", ("network",), "ipc namespace"),
        ("kernel.hostname", (), "uts namespace"),
        ("net/../../etc", ("network",), "not a sysctl name"),
        ("vm..x", ("network",), "not a sysctl name"),
    ],
)
def test_sysctl_refused(key: str, namespaces: tuple[str, ...], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        rootfs.sysctl_paths(_sysctl_config({key: "1"}, *namespaces))
    assert info.value.where == f'$.linux.sysctl["{key}"]'
    assert problem in info.value.problem
