"""The v1 driver against a fake cgroupfs: which files get which values, in which order."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from lowrun.cgroups import CgroupError, create_manager
from lowrun.cgroups.fake import FakeCgroupFs, v1_host

ALL = (
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "rdma",
    "name=systemd",
)


@pytest.fixture
def host(tmp_path):
    return v1_host(str(tmp_path))


@pytest.fixture
def mgr(host):
    m = create_manager("c1", "/berth/c1", host=host)
    m.apply(4242)
    return m


def written(host, name):
    """The values written to files called `name`, in order."""
    return [v for p, v in host.fs.writes if os.path.basename(p) == name]


def read(mgr, subsystem, name):
    return Path(mgr.paths[subsystem], name).read_text().strip()


def test_apply_creates_every_hierarchy_and_moves_the_pid(host, mgr):
    for subsystem, path in mgr.paths.items():
        assert os.path.isdir(path), subsystem
        assert read(mgr, subsystem, "cgroup.procs") == "4242"
    assert mgr.pids() == [4242]
    assert mgr.exists()


def test_new_cpuset_levels_get_the_parents_cpus_and_mems(host, mgr):
    parent = os.path.dirname(mgr.paths["cpuset"])
    assert Path(parent, "cpuset.cpus").read_text() == "0-1"
    assert read(mgr, "cpuset", "cpuset.cpus") == "0-1"
    assert read(mgr, "cpuset", "cpuset.mems") == "0"
    # The parent is filled before the child, and before the pid is moved in.
    writes = [os.path.relpath(p, host.root) for p, _ in host.fs.writes if "/cpuset/" in p]
    assert writes[:5] == [
        "cpuset/berth/cpuset.cpus",
        "cpuset/berth/cpuset.mems",
        "cpuset/berth/c1/cpuset.cpus",
        "cpuset/berth/c1/cpuset.mems",
        "cpuset/berth/c1/cgroup.procs",
    ]


def test_memory_limits(host, mgr):
    mgr.set(
        {
            "memory": {
                "limit": 64 << 20,
                "reservation": 32 << 20,
                "swap": 128 << 20,
                "swappiness": 0,
                "disableOOMKiller": True,
            }
        }
    )
    assert read(mgr, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert read(mgr, "memory", "memory.memsw.limit_in_bytes") == str(128 << 20)
    assert read(mgr, "memory", "memory.soft_limit_in_bytes") == str(32 << 20)
    assert read(mgr, "memory", "memory.swappiness") == "0"
    assert read(mgr, "memory", "memory.oom_control") == "1"


def test_memory_and_swap_order_follows_the_current_limit(host, mgr):
    # Lowering from "unlimited": memory first (memsw must stay >= memory).
    mgr.set({"memory": {"limit": 64 << 20, "swap": 128 << 20}})
    names = [os.path.basename(p) for p, _ in host.fs.writes if "memory." in p]
    assert names[-2:] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    # Raising above the current memory limit: swap first.
    mgr.set({"memory": {"limit": 256 << 20, "swap": 512 << 20}})
    names = [os.path.basename(p) for p, _ in host.fs.writes if "memory." in p]
    assert names[-2:] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]


def test_unlimited_memory_also_unlimits_swap(host, mgr):
    mgr.set({"memory": {"limit": -1}})
    assert written(host, "memory.memsw.limit_in_bytes") == ["-1"]
    assert written(host, "memory.limit_in_bytes") == ["-1"]


def test_memory_limit_below_usage_explains_ebusy(host, mgr):
    Path(mgr.paths["memory"], "memory.usage_in_bytes").write_text("5000000")
    host.fs.fail[os.path.join(mgr.paths["memory"], "memory.limit_in_bytes")] = errno.EBUSY
    with pytest.raises(CgroupError) as info:
        mgr.set({"memory": {"limit": 4096}})
    assert info.value.field == "$.linux.resources.memory.limit"
    assert info.value.errno == errno.EBUSY
    assert "already uses 5000000" in str(info.value)


def test_kernel_error_names_field_file_and_errno(host, mgr):
    target = os.path.join(mgr.paths["pids"], "pids.max")
    host.fs.fail[target] = errno.EINVAL
    with pytest.raises(CgroupError) as info:
        mgr.set({"pids": {"limit": 5}})
    e = info.value
    assert (e.field, e.path, e.errno) == ("$.linux.resources.pids.limit", target, errno.EINVAL)
    assert str(e).startswith("$.linux.resources.pids.limit: cannot write '5' to ")
    assert "Invalid argument" in str(e)


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"memory": {"limit": "1g"}}, "$.linux.resources.memory.limit"),
        ({"memory": {"limit": -2}}, "$.linux.resources.memory.limit"),
        ({"memory": {"swappiness": 101}}, "$.linux.resources.memory.swappiness"),
        ({"memory": {"disableOOMKiller": 1}}, "$.linux.resources.memory.disableOOMKiller"),
        ({"cpu": {"shares": -5}}, "$.linux.resources.cpu.shares"),
        ({"cpu": {"cpus": 3}}, "$.linux.resources.cpu.cpus"),
        ({"pids": {"limit": True}}, "$.linux.resources.pids.limit"),
        ({"blockIO": {"weight": 70000}}, "$.linux.resources.blockIO.weight"),
        (
            {"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}},
            "$.linux.resources.blockIO.throttleReadBpsDevice[0]",
        ),
        ({"devices": [{"access": "rwm"}]}, "$.linux.resources.devices[0]"),
        (
            {"devices": [{"allow": True, "type": "x"}]},
            "$.linux.resources.devices[0].type",
        ),
        (
            {"devices": [{"allow": True, "access": "rwx"}]},
            "$.linux.resources.devices[0].access",
        ),
        (
            {"hugepageLimits": [{"pageSize": "2M", "limit": 1}]},
            "$.linux.resources.hugepageLimits[0].pageSize",
        ),
        ({"memory": []}, "$.linux.resources.memory"),
    ],
)
def test_bad_values_name_their_field_and_write_nothing(host, mgr, resources, field):
    before = len(host.fs.writes)
    with pytest.raises(CgroupError) as info:
        mgr.set(resources)
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")
    assert len(host.fs.writes) == before


def test_kernel_memory_is_ignored_with_a_warning(host, mgr, caplog):
    mgr.set({"memory": {"kernel": 1 << 20, "kernelTCP": 1 << 20}})
    assert not written(host, "memory.kmem.limit_in_bytes")
    assert "kernel memory limits are deprecated" in caplog.text


def test_cpu_settings(host, mgr):
    mgr.set(
        {
            "cpu": {
                "shares": 512,
                "quota": 50000,
                "period": 100000,
                "realtimeRuntime": 950,
                "realtimePeriod": 1000,
                "cpus": "1",
                "mems": "0",
                "idle": 1,
            }
        }
    )
    assert read(mgr, "cpu", "cpu.shares") == "512"
    assert read(mgr, "cpu", "cpu.cfs_quota_us") == "50000"
    assert read(mgr, "cpu", "cpu.cfs_period_us") == "100000"
    assert read(mgr, "cpu", "cpu.rt_period_us") == "1000"
    assert read(mgr, "cpu", "cpu.rt_runtime_us") == "950"
    assert read(mgr, "cpu", "cpu.idle") == "1"
    assert read(mgr, "cpuset", "cpuset.cpus") == "1"
    assert read(mgr, "cpuset", "cpuset.mems") == "0"


class ClampingFs(FakeCgroupFs):
    """cpu.shares reads back clamped to [2, 262144], as the kernel does."""

    def write(self, path: str, value: str) -> None:
        if path.endswith("cpu.shares"):
            value = str(min(max(int(value), 2), 262144))
        super().write(path, value)


@pytest.mark.parametrize(("shares", "message"), [(1, "minimum"), (300000, "maximum")])
def test_cpu_shares_are_read_back(tmp_path, shares, message):
    host = v1_host(str(tmp_path))
    fs = ClampingFs(host.fs.base)
    fs.templates = host.fs.templates
    host.fs = fs
    m = create_manager("c1", "/c1", host=host)
    with pytest.raises(CgroupError, match=f"{message} allowed cpu shares") as info:
        m.set({"cpu": {"shares": shares}})
    assert info.value.field == "$.linux.resources.cpu.shares"


def test_cpu_period_refused_is_retried_after_the_quota(host, mgr):
    period = os.path.join(mgr.paths["cpu"], "cpu.cfs_period_us")
    calls = []
    original = host.fs.write

    def write(path, value):
        calls.append(os.path.basename(path))
        if path == period and calls.count("cpu.cfs_period_us") == 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        original(path, value)

    host.fs.write = write
    mgr.set({"cpu": {"quota": 10000, "period": 20000}})
    assert calls == ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.cfs_period_us"]
    assert read(mgr, "cpu", "cpu.cfs_period_us") == "20000"


def test_pids_limit(host, mgr):
    mgr.set({"pids": {"limit": 10}})
    assert read(mgr, "pids", "pids.max") == "10"
    mgr.set({"pids": {"limit": -1}})
    assert read(mgr, "pids", "pids.max") == "max"
    mgr.set({"pids": {"limit": 0}})  # 0 leaves the limit alone, as runc 1.1 does
    assert read(mgr, "pids", "pids.max") == "max"


def test_blkio_uses_bfq_files_when_there_is_no_cfq_weight(host, mgr):
    mgr.set(
        {
            "blockIO": {
                "weight": 300,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 400}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 200}],
            }
        }
    )
    assert read(mgr, "blkio", "blkio.bfq.weight") == "300"
    assert host.fs.lines(mgr.paths["blkio"] + "/blkio.bfq.weight_device") == ["8:0 400"]
    assert read(mgr, "blkio", "blkio.throttle.read_bps_device") == "8:0 1048576"
    assert read(mgr, "blkio", "blkio.throttle.write_bps_device") == "8:0 2097152"
    assert read(mgr, "blkio", "blkio.throttle.read_iops_device") == "8:16 100"
    assert read(mgr, "blkio", "blkio.throttle.write_iops_device") == "8:16 200"


def test_blkio_cfq_files_when_present(host, mgr):
    for name in ("blkio.weight", "blkio.weight_device", "blkio.leaf_weight"):
        Path(mgr.paths["blkio"], name).write_text("")
    mgr.set({"blockIO": {"weight": 300, "leafWeight": 200}})
    assert read(mgr, "blkio", "blkio.weight") == "300"
    assert read(mgr, "blkio", "blkio.leaf_weight") == "200"


def test_absent_controllers_fail_like_runc_only_when_used(host, mgr):
    # This host (like the real one) mounts no hugetlb, net_cls, net_prio hierarchy.
    mgr.set({"network": {}, "hugepageLimits": []})
    for resources, field in [
        ({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]}, "hugepageLimits"),
        ({"network": {"classID": 0x100001}}, "network.classID"),
        ({"network": {"priorities": [{"name": "lo", "priority": 2}]}}, "network.priorities[0]"),
    ]:
        with pytest.raises(CgroupError, match="not mounted") as info:
            mgr.set(resources)
        assert info.value.field == f"$.linux.resources.{field}"


def test_hugetlb_net_and_rdma_when_mounted(tmp_path):
    host = v1_host(str(tmp_path), controllers=ALL)
    m = create_manager("c1", "/c1", host=host)
    m.apply(7)
    m.set(
        {
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
            "network": {
                "classID": 0x100001,
                "priorities": [{"name": "lo", "priority": 2}, {"name": "eth0", "priority": 5}],
            },
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
        }
    )
    assert read(m, "hugetlb", "hugetlb.2MB.limit_in_bytes") == str(4 << 20)
    assert read(m, "net_cls", "net_cls.classid") == str(0x100001)
    assert host.fs.lines(m.paths["net_prio"] + "/net_prio.ifpriomap") == ["lo 2", "eth0 5"]
    assert read(m, "rdma", "rdma.max") == "mlx5_1 hca_handle=3 hca_object=10000"
    with pytest.raises(CgroupError) as info:
        m.set({"hugepageLimits": [{"pageSize": "64KB", "limit": 1}]})
    assert info.value.field == "$.linux.resources.hugepageLimits[0]"
    assert info.value.errno == errno.ENOENT


def device_writes(host, mgr):
    path = mgr.paths["devices"]
    return [(os.path.basename(p), v) for p, v in host.fs.writes if p.startswith(path + "/devices.")]


def test_device_rules_end_in_runcs_state(host, mgr):
    mgr.set(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 4, "minor": None, "access": "r"},
                {"allow": False, "type": "b", "major": 8, "minor": 0, "access": "w"},
            ]
        },
        devices=[
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
            {"path": "/dev/fifo", "type": "p"},
        ],
    )
    ops = device_writes(host, mgr)
    # From the fresh cgroup's allow-all: reset to deny-all, then the allowed exceptions.
    assert ops[0] == ("devices.deny", "a *:* rwm")
    assert all(name == "devices.allow" for name, _ in ops[1:])
    allowed = {line for _, line in ops[1:]}
    assert allowed == {
        "b *:* m",
        "c *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:2 rwm",
        "c 10:200 rwm",
        "c 136:* rwm",
        "c 4:* r",
        "c 10:229 rwm",  # the linux.devices node, as runc allows it
    }


def test_allow_all_with_a_hole_punched_by_the_defaults(host, mgr):
    # runc: [allow all, deny c 1:3 w] + default "allow c 1:3 rwm" ends as allow-all.
    mgr.set(
        {
            "devices": [
                {"allow": True, "access": "rwm"},
                {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"},
            ]
        }
    )
    assert device_writes(host, mgr) == [("devices.allow", "a *:* rwm")]


def test_device_update_writes_only_the_difference(host, mgr):
    devices_list = Path(mgr.paths["devices"], "devices.list")
    devices_list.write_text("c 1:3 rwm\nc 1:5 rwm\nc 4:* rw\n")  # a whitelist in place
    before = len(device_writes(host, mgr))
    mgr.set(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 4, "access": "r"},
            ]
        }
    )
    ops = device_writes(host, mgr)[before:]
    assert ("devices.deny", "c 4:* w") in ops  # narrowed, not reset
    assert ("devices.allow", "c 1:9 rwm") in ops
    assert ("devices.deny", "a *:* rwm") not in ops
    assert not any(line in ("c 1:3 rwm", "c 1:5 rwm") for _, line in ops)


def test_no_rules_at_create_means_runcs_defaults(host, mgr):
    mgr.set({}, devices=[])
    ops = device_writes(host, mgr)
    assert ops[0] == ("devices.deny", "a *:* rwm") and len(ops) == 12


def test_update_without_devices_leaves_the_device_cgroup(host, mgr):
    mgr.set({"memory": {"limit": 1 << 30}})
    assert not [p for p, _ in host.fs.writes if "devices." in os.path.basename(p)]


def test_unified_is_refused_on_v1(host, mgr):
    with pytest.raises(CgroupError, match="cgroup v1 host") as info:
        mgr.set({"unified": {"memory.high": "1G"}})
    assert info.value.field == "$.linux.resources.unified"


def test_set_before_apply_creates_the_directories(host):
    m = create_manager("c1", "/late/c1", host=host)
    m.set({"pids": {"limit": 3}})
    assert read(m, "pids", "pids.max") == "3"
    assert read(m, "cpuset", "cpuset.cpus") == "0-1"


def test_freeze_and_thaw(host, mgr):
    assert not mgr.frozen()
    mgr.freeze()
    assert mgr.frozen()
    assert read(mgr, "freezer", "freezer.state") == "FROZEN"
    mgr.thaw()
    assert not mgr.frozen()


def test_pids_are_collected_from_sub_cgroups(host, mgr):
    main = mgr.paths["devices"]
    host.fs.mkdir(main + "/sub")
    host.fs.mkdir(main + "/sub/deeper")
    host.fs.write(main + "/sub/cgroup.procs", "77")
    host.fs.write(main + "/sub/deeper/cgroup.procs", "78")
    assert mgr.pids() == [77, 78, 4242]


def test_destroy_removes_sub_cgroups_and_tolerates_absence(host, mgr):
    host.fs.mkdir(mgr.paths["memory"] + "/sub")
    host.fs.exit(4242)
    mgr.destroy()
    assert not any(os.path.exists(p) for p in mgr.paths.values())
    assert not mgr.exists() and mgr.pids() == [] and not mgr.frozen()
    mgr.destroy()  # already gone: fine
    # The parents runc would leave are still there.
    assert os.path.isdir(os.path.dirname(mgr.paths["memory"]))


def test_destroy_retries_ebusy_then_reports_it(host, mgr):
    host.fs.exit(4242)
    host.fs.busy[mgr.paths["pids"]] = 3
    mgr.destroy()
    assert not os.path.exists(mgr.paths["pids"])
    other = create_manager("c2", "/c2", host=host)
    other.apply(99)  # a process that never exits
    with pytest.raises(CgroupError) as info:
        other.destroy()
    assert info.value.errno == errno.EBUSY
    host.fs.exit(99)
    other.destroy()


def test_stats_and_oom_kills(host, mgr):
    mem = Path(mgr.paths["memory"])
    (mem / "memory.usage_in_bytes").write_text("1048576\n")
    (mem / "memory.max_usage_in_bytes").write_text("2097152\n")
    (mem / "memory.stat").write_text("cache 4096\nrss 8192\n")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    acct = Path(mgr.paths["cpuacct"])
    (acct / "cpuacct.usage").write_text("5000\n")
    (acct / "cpuacct.usage_percpu").write_text("2000 3000 \n")
    (acct / "cpuacct.usage_all").write_text("cpu user system\n0 1500 500\n1 2000 1000\n")
    (acct / "cpuacct.stat").write_text("user 3\nsystem 1\n")
    Path(mgr.paths["cpu"], "cpu.stat").write_text(
        "nr_periods 10\nnr_throttled 4\nthrottled_time 99\n"
    )
    Path(mgr.paths["pids"], "pids.current").write_text("2\n")
    Path(mgr.paths["blkio"], "blkio.throttle.io_service_bytes_recursive").write_text(
        "7:0 Read 4096\n7:0 Write 0\nTotal 4096\n"
    )
    mgr.set({"memory": {"limit": 64 << 20}, "pids": {"limit": 10}})
    stats = mgr.stats()
    assert stats["memory"]["usage"] == {
        "limit": 64 << 20,
        "usage": 1048576,
        "max": 2097152,
        "failcnt": 0,
    }
    assert stats["memory"]["cache"] == 4096 and stats["memory"]["raw"]["rss"] == 8192
    assert stats["memory"]["oomKill"] == 3 == mgr.oom_kill_count()
    assert stats["cpu"]["usage"]["total"] == 5000
    assert stats["cpu"]["usage"]["percpu"] == [2000, 3000]
    assert stats["cpu"]["usage"]["percpu_user"] == [1500, 2000]
    assert stats["cpu"]["usage"]["percpu_kernel"] == [500, 1000]
    hz = os.sysconf("SC_CLK_TCK")
    assert stats["cpu"]["usage"]["user"] == 3 * 10**9 // hz
    assert stats["cpu"]["throttling"] == {
        "periods": 10,
        "throttledPeriods": 4,
        "throttledTime": 99,
    }
    assert stats["pids"] == {"current": 2, "limit": 10}
    assert stats["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 7, "minor": 0, "op": "Read", "value": 4096},
        {"major": 7, "minor": 0, "op": "Write", "value": 0},
    ]
