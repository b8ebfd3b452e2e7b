"""Host detection and cgroupsPath → directory rules (runc's fs and fs2 drivers), on fake trees."""

from __future__ import annotations

import json
import os

import pytest

from lowrun.cgroups import CgroupError, create_manager, load_manager
from lowrun.cgroups.fake import v1_host, v2_host
from lowrun.cgroups.host import build_host, clean_path, parse_mountinfo, parse_proc_cgroup

# This machine's mountinfo lines for /sys/fs/cgroup (a hybrid host), plus a co-mount.
HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /mnt/other\\040dir rw - cgroup cgroup rw,pids
"""
SELF_CGROUP = """\
9:name=systemd:/
4:memory:/process_api/b523
3:cpuset:/
2:cpu,cpuacct:/
5:devices:/
0::/
"""


def test_mountinfo_controllers_and_escapes():
    mounts = parse_mountinfo(HYBRID_MOUNTINFO)
    by_point = {m[0]: m for m in mounts}
    assert by_point["/sys/fs/cgroup/cpu,cpuacct"][3] == ("cpu", "cpuacct")
    assert by_point["/sys/fs/cgroup/systemd"][3] == ("name=systemd",)  # xattr is an option
    assert by_point["/sys/fs/cgroup/unified"][2] == "cgroup2"
    assert "/mnt/other dir" in by_point
    assert "/sys/fs/cgroup" not in by_point  # the tmpfs is no cgroup


def test_proc_cgroup_parsing_splits_comounts():
    own = parse_proc_cgroup(SELF_CGROUP)
    assert own["cpu"] == own["cpuacct"] == "/"
    assert own["memory"] == "/process_api/b523"
    assert own[""] == "/"


def test_hybrid_host_is_v1_with_unified_joined():
    host = build_host("/sys/fs/cgroup", HYBRID_MOUNTINFO, SELF_CGROUP)
    assert host.mode == "v1" and host.hybrid
    assert host.hierarchies["cpuacct"].mountpoint == "/sys/fs/cgroup/cpu,cpuacct"
    assert "pids" not in host.hierarchies  # mounted elsewhere, not under the root
    m = create_manager("abc", "/berth/abc", host=host)
    state = m.to_state()
    assert (
        state["paths"]["cpu"] == state["paths"]["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/berth/abc"
    )
    assert state["paths"]["unified"] == "/sys/fs/cgroup/unified/berth/abc"


def test_unified_only_host_is_v2():
    mountinfo = "31 23 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    host = build_host("/sys/fs/cgroup", mountinfo, "0::/user.slice/session-1.scope\n")
    assert host.mode == "v2"
    m = create_manager("abc", None, host=host)
    # fs2: relative paths go below the parent of our own cgroup.
    assert m.to_state()["path"] == "/sys/fs/cgroup/user.slice/abc"


def test_no_cgroup_mounts_is_a_clear_error():
    with pytest.raises(CgroupError, match="no cgroup hierarchy"):
        build_host("/sys/fs/cgroup", "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n", "")


@pytest.mark.parametrize(
    ("given", "cleaned"),
    [
        ("/a/b", "/a/b"),
        ("/a/../../b", "/b"),
        ("a/./b/", "a/b"),
        ("../../etc", "etc"),
        ("a/../../..", "."),
        ("", ""),
    ],
)
def test_clean_path_never_climbs(given, cleaned):
    assert clean_path(given) == cleaned


def test_v1_absolute_relative_and_default_paths(tmp_path):
    host = v1_host(str(tmp_path), own={"memory": "/process_api/b523"})
    root = host.root
    absolute = create_manager("c1", "/berth/c1", host=host).to_state()["paths"]
    assert absolute["memory"] == f"{root}/memory/berth/c1"
    assert absolute["name=systemd"] == f"{root}/systemd/berth/c1"
    assert absolute["unified"] == f"{root}/unified/berth/c1"
    relative = create_manager("c1", "rel/c1", host=host).to_state()["paths"]
    assert relative["memory"] == f"{root}/memory/process_api/b523/rel/c1"
    assert relative["pids"] == f"{root}/pids/rel/c1"
    default = create_manager("c1", None, host=host).to_state()["paths"]
    assert default["memory"] == f"{root}/memory/process_api/b523/c1"
    assert default["freezer"] == f"{root}/freezer/c1"
    assert "hugetlb" not in default and "net_cls" not in default


def test_v1_path_cannot_escape_with_dotdot(tmp_path):
    host = v1_host(str(tmp_path), own={"memory": "/a"})
    paths = create_manager("c1", "../../../etc", host=host).to_state()["paths"]
    assert paths["memory"] == f"{host.root}/memory/a/etc"
    paths = create_manager("c1", "/../../etc", host=host).to_state()["paths"]
    assert paths["memory"] == f"{host.root}/memory/etc"


def test_v2_paths(tmp_path):
    host = v2_host(str(tmp_path), own="/system.slice/lowrun.service")
    assert create_manager("c", "/x/y", host=host).to_state()["path"] == f"{host.root}/x/y"
    assert create_manager("c", "y", host=host).to_state()["path"] == f"{host.root}/system.slice/y"
    top = v2_host(str(tmp_path / "top"), own="/")
    assert create_manager("c", None, host=top).to_state()["path"] == f"{top.root}/c"


@pytest.mark.parametrize("bad", ["system.slice:berth:abc", ":berth:abc"])
def test_systemd_style_path_is_refused(tmp_path, bad):
    host = v1_host(str(tmp_path))
    with pytest.raises(CgroupError) as info:
        create_manager("abc", bad, host=host)
    assert info.value.field == "$.linux.cgroupsPath"
    assert "systemd" in str(info.value)


@pytest.mark.parametrize("bad", ["/", "/..", "."])
def test_root_cgroup_is_refused(tmp_path, bad):
    host = v1_host(str(tmp_path))
    with pytest.raises(CgroupError, match=r"\$\.linux\.cgroupsPath: .*root cgroup"):
        create_manager("abc", bad, host=host)


def test_devices_hierarchy_is_required_on_v1(tmp_path):
    host = v1_host(str(tmp_path), controllers=("memory", "cpu", "freezer"))
    with pytest.raises(CgroupError, match="devices"):
        create_manager("abc", "/x", host=host)


def test_state_round_trip_through_json(tmp_path):
    for host in (v1_host(str(tmp_path / "a")), v2_host(str(tmp_path / "b"))):
        m = create_manager("c1", "/berth/c1", host=host)
        state = json.loads(json.dumps(m.to_state()))
        again = load_manager(state, root=host.root, host=host)
        assert again.to_state() == m.to_state()
        assert type(again) is type(m)


def test_state_with_paths_outside_the_root_is_refused(tmp_path):
    host = v1_host(str(tmp_path))
    with pytest.raises(CgroupError, match="not below"):
        load_manager({"driver": "v1", "paths": {"memory": "/etc"}}, root=host.root, host=host)
    with pytest.raises(CgroupError, match="not below"):
        load_manager({"driver": "v2", "path": host.root}, root=host.root, host=host)
    with pytest.raises(CgroupError, match="unknown cgroup driver"):
        load_manager({"driver": "v3"}, root=host.root, host=host)


def test_empty_state_is_a_manager_of_nothing(tmp_path):
    m = load_manager({})
    assert m.pids() == [] and not m.exists() and not m.frozen() and m.oom_kill_count() == 0
    m.destroy()
    with pytest.raises(CgroupError, match="freezer"):
        m.freeze()


def test_comounted_controllers_share_one_directory(tmp_path):
    base = str(tmp_path)
    host = v1_host(base)
    # Re-describe the tree with cpu and cpuacct as one mount, as many distributions do.
    cpu = os.path.join(host.root, "cpu")
    mountinfo = f"32 31 0:29 / {cpu} rw - cgroup cgroup rw,cpu,cpuacct\n"
    mountinfo += f"36 31 0:33 / {host.root}/devices rw - cgroup cgroup rw,devices\n"
    host2 = build_host(host.root, mountinfo, "", host.fs)
    m = create_manager("c1", "/c1", host=host2)
    m.apply(42)
    procs = [p for p, v in host.fs.writes if p.endswith("cgroup.procs")]
    # runc's subsystem order (devices before cpu); the cpu,cpuacct directory only once.
    assert procs == [f"{host.root}/devices/c1/cgroup.procs", f"{cpu}/c1/cgroup.procs"]
    host.fs.exit(42)
    m.destroy()
    assert not os.path.exists(f"{cpu}/c1")
