"""The v2 driver against a fake unified tree: files of cgroup-v2.rst, runc's conversions."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from lowrun.cgroups import CgroupError, create_manager
from lowrun.cgroups.fake import v2_host
from lowrun.cgroups.resources import blkio_weight_to_io_weight, shares_to_weight, swap_to_v2


@pytest.fixture
def host(tmp_path):
    return v2_host(str(tmp_path), own="/system.slice/berth.service")


@pytest.fixture
def mgr(host):
    m = create_manager("c1", "/berth/c1", host=host)
    m.apply(4242)
    return m


def read(mgr, name):
    return Path(mgr.path, name).read_text().strip()


def lines(host, mgr, name):
    return host.fs.lines(os.path.join(mgr.path, name))


def test_apply_enables_controllers_down_to_the_parent_and_moves_the_pid(host, mgr):
    enable = "+cpuset +cpu +io +memory +hugetlb +pids +rdma"
    subtree = [(os.path.relpath(p, host.root), v) for p, v in host.fs.writes if "subtree" in p]
    assert subtree == [("cgroup.subtree_control", enable), ("berth/cgroup.subtree_control", enable)]
    assert read(mgr, "cgroup.procs") == "4242"
    assert mgr.pids() == [4242] and mgr.exists()


def test_controllers_that_cannot_be_enabled_together_are_tried_one_by_one(host):
    root_ctl = os.path.join(host.root, "cgroup.subtree_control")
    original = host.fs.write

    def write(path, value):
        if path == root_ctl and (" " in value or value == "+rdma"):
            raise OSError(errno.EINVAL, "Invalid argument")
        original(path, value)

    host.fs.write = write
    create_manager("c1", "/c1", host=host).apply(1)
    assert host.fs.lines(root_ctl) == ["+cpuset", "+cpu", "+io", "+memory", "+hugetlb", "+pids"]


@pytest.mark.parametrize(
    ("shares", "weight"), [(0, 0), (2, 1), (1024, 39), (262144, 10000), (512, 20)]
)
def test_cpu_shares_to_weight(shares, weight):
    assert shares_to_weight(shares) == weight


@pytest.mark.parametrize(("blkio", "io"), [(0, 0), (10, 1), (500, 4950), (1000, 10000)])
def test_blkio_weight_to_io_weight(blkio, io):
    assert blkio_weight_to_io_weight(blkio) == io


@pytest.mark.parametrize(
    ("swap", "limit", "v2"),
    [
        (None, None, None),
        (None, -1, -1),
        (-1, 1 << 20, -1),
        (3 << 20, 1 << 20, 2 << 20),
        (1 << 20, 1 << 20, 0),
    ],
)
def test_swap_conversion(swap, limit, v2):
    assert swap_to_v2(swap, limit) == v2


@pytest.mark.parametrize(
    ("swap", "limit", "message"),
    [(1 << 20, None, "without a memory limit"), (1 << 20, 2 << 20, "must be >=")],
)
def test_swap_conversion_errors(swap, limit, message):
    with pytest.raises(CgroupError, match=message) as info:
        swap_to_v2(swap, limit)
    assert info.value.field == "$.linux.resources.memory.swap"


def test_memory_files(host, mgr):
    mgr.set({"memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 16 << 20}})
    assert read(mgr, "memory.max") == str(64 << 20)
    assert read(mgr, "memory.swap.max") == str(32 << 20)
    assert read(mgr, "memory.low") == str(16 << 20)
    mgr.set({"memory": {"limit": 64 << 20, "swap": 64 << 20}})
    assert read(mgr, "memory.swap.max") == "0"  # memory == memory+swap: no swap at all
    mgr.set({"memory": {"limit": -1}})
    assert read(mgr, "memory.max") == "max" and read(mgr, "memory.swap.max") == "max"


def test_missing_swap_accounting_is_fine_for_unlimited(tmp_path):
    host = v2_host(str(tmp_path))
    m = create_manager("c1", "/c1", host=host)
    m.apply(1)
    os.unlink(os.path.join(m.path, "memory.swap.max"))
    m.set({"memory": {"limit": -1}})
    assert read(m, "memory.max") == "max"
    with pytest.raises(CgroupError) as info:
        m.set({"memory": {"limit": 1 << 20, "swap": 2 << 20}})
    assert info.value.errno == errno.ENOENT
    assert info.value.field == "$.linux.resources.memory.swap"


def test_cpu_files(host, mgr):
    mgr.set({"cpu": {"shares": 1024, "quota": 50000, "period": 200000, "idle": 1}})
    assert read(mgr, "cpu.weight") == "39"
    assert read(mgr, "cpu.max") == "50000 200000"
    assert read(mgr, "cpu.idle") == "1"
    mgr.set({"cpu": {"quota": -1}})
    assert read(mgr, "cpu.max") == "max 100000"
    mgr.set({"cpu": {"period": 250000}})
    assert read(mgr, "cpu.max") == "max 250000"
    mgr.set({"cpu": {"cpus": "0-1", "mems": "0"}})
    assert read(mgr, "cpuset.cpus") == "0-1" and read(mgr, "cpuset.mems") == "0"


def test_realtime_is_refused(host, mgr):
    with pytest.raises(CgroupError, match="real-time") as info:
        mgr.set({"cpu": {"realtimeRuntime": 1000}})
    assert info.value.field == "$.linux.resources.cpu.realtimeRuntime"


def test_io_weight_and_throttles(host, mgr):
    mgr.set(
        {
            "blockIO": {
                "weight": 500,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}],
            }
        }
    )
    assert lines(host, mgr, "io.weight")[-2:] == ["4950", "8:0 10000"]
    assert lines(host, mgr, "io.max") == [
        "8:0 rbps=1048576",
        "8:0 wbps=2097152",
        "8:0 riops=100",
        "8:0 wiops=200",
    ]


def test_io_bfq_weight_is_preferred_unconverted(tmp_path):
    host = v2_host(str(tmp_path), bfq=True)
    m = create_manager("c1", "/c1", host=host)
    m.set({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 300}]}})
    assert lines(host, m, "io.bfq.weight")[-2:] == ["500", "8:0 300"]
    assert lines(host, m, "io.weight") == ["default 100"]


def test_pids_hugetlb_rdma(host, mgr):
    mgr.set(
        {
            "pids": {"limit": 64},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 8 << 20}],
            "rdma": {"mlx4_0": {"hcaHandles": 2}},
        }
    )
    assert read(mgr, "pids.max") == "64"
    assert read(mgr, "hugetlb.2MB.max") == str(8 << 20)
    assert read(mgr, "rdma.max") == "mlx4_0 hca_handle=2"
    mgr.set({"pids": {"limit": -1}})
    assert read(mgr, "pids.max") == "max"


def test_v1_only_fields_are_ignored_with_a_warning(host, mgr, caplog):
    before = len(host.fs.writes)
    mgr.set(
        {
            "memory": {"swappiness": 10, "disableOOMKiller": True},
            "network": {"classID": 5, "priorities": [{"name": "lo", "priority": 1}]},
            "blockIO": {"leafWeight": 100},
        }
    )
    assert len(host.fs.writes) == before
    for name in ("memory.swappiness", "memory.disableOOMKiller", "network", "leafWeight"):
        assert name in caplog.text


def run_bpf(code: bytes, dtype: str, access: str, major: int, minor: int) -> int:
    """Interpret the device program (the handful of opcodes it uses) for one request."""
    ctx = struct.pack(
        "<III",
        (sum({"m": 1, "r": 2, "w": 4}[c] for c in access) << 16) | {"b": 1, "c": 2}[dtype],
        major,
        minor,
    )
    insns = [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]
    regs = [0] * 11
    pc = 0
    while True:
        op, regs_byte, off, imm = insns[pc]
        dst, src = regs_byte & 0xF, regs_byte >> 4
        pc += 1
        if op == 0x61:  # ldxw dst, [r1 + off]
            assert src == 1
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif op == 0x57:
            regs[dst] &= imm & 0xFFFFFFFFFFFFFFFF
        elif op == 0x77:
            regs[dst] >>= imm
        elif op == 0xB7:
            regs[dst] = imm
        elif op == 0xBF:
            regs[dst] = regs[src]
        elif op == 0x15:
            pc += off if regs[dst] == imm else 0
        elif op == 0x55:
            pc += off if regs[dst] != imm else 0
        elif op == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")


def test_device_rules_become_a_bpf_program(host, mgr):
    mgr.set(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 4, "access": "r"},
                {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "rw"},
            ]
        },
        devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
    )
    code = host.fs.programs[mgr.path]
    allowed = [
        ("c", "rwm", 1, 3),  # /dev/null (runc default)
        ("c", "r", 1, 9),
        ("c", "m", 99, 99),  # mknod of any char device
        ("b", "m", 7, 0),
        ("c", "rw", 136, 5),  # any pty
        ("c", "r", 4, 1),
        ("b", "r", 8, 0),
        ("b", "rw", 8, 0),
        ("c", "rw", 10, 229),  # the linux.devices node
    ]
    denied = [
        ("c", "r", 1, 11),  # /dev/kmsg
        ("c", "w", 4, 1),  # only r allowed on 4:*
        ("b", "rw", 8, 1),
        ("b", "r", 254, 0),
        ("c", "rw", 10, 230),
    ]
    for request in allowed:
        assert run_bpf(code, *request) == 1, request
    for request in denied:
        assert run_bpf(code, *request) == 0, request


def test_allow_all_with_deny_exceptions(host, mgr):
    mgr.set(
        {
            "devices": [
                {"allow": True, "access": "rwm"},
                {"allow": False, "type": "b", "major": 8, "access": "w"},
            ]
        }
    )
    code = host.fs.programs[mgr.path]
    assert run_bpf(code, "b", "r", 8, 0) == 1
    assert run_bpf(code, "b", "rw", 8, 0) == 0  # any denied bit denies
    assert run_bpf(code, "c", "rw", 1, 11) == 1


def test_update_without_devices_keeps_the_program(host, mgr):
    mgr.set({"pids": {"limit": 5}})
    assert mgr.path not in host.fs.programs


def test_unified_entries(host, mgr):
    mgr.set({"unified": {"memory.high": "1073741824", "pids.max": "20"}})
    assert read(mgr, "memory.high") == "1073741824"
    assert read(mgr, "pids.max") == "20"
    with pytest.raises(CgroupError, match="controller is not available") as info:
        mgr.set({"unified": {"misc.max": "res_a 1"}})
    assert info.value.field == "$.linux.resources.unified.misc.max"
    with pytest.raises(CgroupError, match="no slashes") as info:
        mgr.set({"unified": {"../cgroup.procs": "1"}})
    with pytest.raises(CgroupError, match="string") as info:
        mgr.set({"unified": {"memory.high": 5}})


def test_freeze_waits_for_cgroup_events(host, mgr):
    assert not mgr.frozen()
    mgr.freeze()
    assert mgr.frozen() and read(mgr, "cgroup.freeze") == "1"
    assert "frozen 1" in read(mgr, "cgroup.events")
    mgr.thaw()
    assert not mgr.frozen()


def test_freeze_times_out_when_the_kernel_never_reports_frozen(host, mgr, monkeypatch):
    import lowrun.cgroups.v2 as v2

    monkeypatch.setattr(v2, "FREEZE_TIMEOUT", 0.05)
    original = host.fs.write

    def write(path, value):
        original(path, value)
        if path.endswith("cgroup.freeze"):
            Path(mgr.path, "cgroup.events").write_text("populated 1\nfrozen 0\n")

    host.fs.write = write
    with pytest.raises(CgroupError, match="did not become frozen"):
        mgr.freeze()
    assert read(mgr, "cgroup.freeze") == "0"  # left thawed, not half-frozen


def test_stats_from_v2_files(host, mgr):
    d = Path(mgr.path)
    (d / "cpu.stat").write_text(
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\n"
        "nr_throttled 2\nthrottled_usec 30\n"
    )
    (d / "memory.current").write_text("4096\n")
    (d / "memory.max").write_text("8192\n")
    (d / "memory.swap.current").write_text("100\n")
    (d / "memory.swap.max").write_text("1000\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    (d / "memory.stat").write_text("anon 1024\nfile 2048\n")
    (d / "pids.current").write_text("3\n")
    (d / "pids.max").write_text("10\n")
    (d / "io.stat").write_text("8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n")
    s = mgr.stats()
    assert s["cpu"]["usage"]["total"] == 1_500_000
    assert s["cpu"]["usage"]["kernel"] == 500_000
    assert s["cpu"]["throttling"] == {"periods": 7, "throttledPeriods": 2, "throttledTime": 30_000}
    assert s["memory"]["usage"]["usage"] == 4096 and s["memory"]["usage"]["limit"] == 8192
    assert s["memory"]["usage"]["failcnt"] == 4
    assert s["memory"]["swap"] == {"limit": 9192, "usage": 4196, "max": 0, "failcnt": 0}
    assert s["memory"]["cache"] == 2048
    assert s["memory"]["oomKill"] == 1 == mgr.oom_kill_count()
    assert s["pids"] == {"current": 3, "limit": 10}
    assert s["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 100},
        {"major": 8, "minor": 0, "op": "Write", "value": 200},
    ]
    assert s["blkio"]["ioServicedRecursive"][1]["value"] == 2


def test_destroy(host, mgr):
    host.fs.mkdir(mgr.path + "/sub")
    host.fs.exit(4242)
    mgr.destroy()
    assert not os.path.exists(mgr.path)
    assert os.path.isdir(os.path.dirname(mgr.path))
    mgr.destroy()
    assert mgr.pids() == [] and not mgr.exists()
