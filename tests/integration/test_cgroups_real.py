"""The cgroup managers against this machine's kernel: v1 hierarchies (hybrid host), and the
v2 driver on the real cgroup2 mount at /sys/fs/cgroup/unified (no controllers there, but
its core files — cgroup.procs, cgroup.freeze, cgroup.events — are the kernel's own).

Every test works in a uniquely named cgroup, kills its processes and removes every
directory it created, even when it fails; a module-level check proves nothing is left.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lowrun.cgroups import CgroupError, CgroupManager, create_manager, load_manager
from lowrun.cgroups.host import build_host, detect_host

ROOT = "/sys/fs/cgroup"
PREFIX = "berth-cgtest-"

pytestmark = pytest.mark.skipif(
    not os.path.isdir(f"{ROOT}/memory") or os.geteuid() != 0,
    reason="needs root and the v1 cgroup hierarchies of this machine",
)


def leftovers() -> list[str]:
    """Every berth-cgtest-* directory under any hierarchy (and our own memory cgroup)."""
    found = []
    for top, dirs, _files in os.walk(ROOT):
        for d in dirs:
            if d.startswith(PREFIX):
                found.append(os.path.join(top, d))
        dirs[:] = [d for d in dirs if not d.startswith(PREFIX)]
    return found


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    before = set(leftovers())
    yield
    assert set(leftovers()) - before == set()


def remove_parents(top: str) -> None:
    """rmdir /sys/fs/cgroup/*/<top> (the parents runc-style destroy leaves), deepest first."""
    for hierarchy in os.listdir(ROOT):
        base = os.path.join(ROOT, hierarchy, top)
        if not os.path.isdir(base):
            continue
        for current, _dirs, _files in sorted(os.walk(base), key=lambda t: -len(t[0])):
            try:
                os.rmdir(current)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise


class Sandbox:
    """Processes and managers made by one test; all torn down by `close`."""

    def __init__(self) -> None:
        self.top = PREFIX + uuid.uuid4().hex[:10]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.managers: list[CgroupManager] = []

    def path(self, name: str = "c") -> str:
        return f"/{self.top}/{name}"

    def manager(self, name: str = "c", **kw: object) -> CgroupManager:
        m = create_manager(f"{self.top}-{name}", self.path(name), **kw)  # type: ignore[arg-type]
        self.managers.append(m)
        return m

    def spawn(self, *args: str, stdin: bool = False) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            list(args),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.procs.append(p)
        return p

    def close(self) -> None:
        for m in self.managers:
            with contextlib.suppress(CgroupError):
                m.thaw()
            for pid in m.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream:
                    stream.close()
        for m in self.managers:
            deadline = time.monotonic() + 5
            while m.pids() and time.monotonic() < deadline:
                time.sleep(0.01)
            m.destroy()
        remove_parents(self.top)


@pytest.fixture
def box() -> Iterator[Sandbox]:
    sandbox = Sandbox()
    try:
        yield sandbox
    finally:
        sandbox.close()


def proc_cgroups(pid: int) -> dict[str, str]:
    result = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        result[names] = path
    return result


def proc_state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    raise AssertionError("no State line")


def kernel(m: CgroupManager, subsystem: str, name: str) -> str:
    return Path(m.to_state()["paths"][subsystem], name).read_text().strip()


def test_host_is_detected_as_hybrid_v1() -> None:
    host = detect_host()
    assert host.mode == "v1" and host.hybrid
    assert {"memory", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "pids"} <= set(
        host.hierarchies
    )
    assert "hugetlb" not in host.hierarchies  # only in the cgroup2 mount, as a stray


def test_apply_moves_a_process_into_every_hierarchy(box: Sandbox) -> None:
    m = box.manager()
    sleeper = box.spawn("sleep", "1000")
    m.apply(sleeper.pid)
    where = proc_cgroups(sleeper.pid)
    for names in ("memory", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "pids"):
        assert where[names] == box.path(), names
    assert where["name=systemd"] == box.path()
    assert where[""] == box.path()  # joined the unified hierarchy too, as runc 1.1 does
    assert m.pids() == [sleeper.pid] and m.exists()
    state = load_manager(m.to_state())
    assert state.pids() == [sleeper.pid]


def test_memory_limits_read_back_from_the_kernel(box: Sandbox) -> None:
    m = box.manager()
    sleeper = box.spawn("sleep", "1000")
    m.apply(sleeper.pid)
    m.set(
        {
            "memory": {
                "limit": 10_000_000,
                "swap": 20_000_000,
                "reservation": 5_000_000,
                "swappiness": 0,
            }
        }
    )
    page = os.sysconf("SC_PAGE_SIZE")
    # The kernel rounds limits down to whole pages.
    assert kernel(m, "memory", "memory.limit_in_bytes") == str(10_000_000 // page * page)
    assert kernel(m, "memory", "memory.memsw.limit_in_bytes") == str(20_000_000 // page * page)
    assert kernel(m, "memory", "memory.soft_limit_in_bytes") == str(5_000_000 // page * page)
    assert kernel(m, "memory", "memory.swappiness") == "0"
    # Raising both (swap must be written first) and lowering again both work.
    m.set({"memory": {"limit": 64 << 20, "swap": 128 << 20}})
    assert kernel(m, "memory", "memory.limit_in_bytes") == str(64 << 20)
    m.set({"memory": {"limit": 32 << 20, "swap": 32 << 20}})
    assert kernel(m, "memory", "memory.memsw.limit_in_bytes") == str(32 << 20)
    stats = m.stats()["memory"]
    assert stats["usage"]["limit"] == 32 << 20
    assert stats["swap"]["limit"] == 32 << 20
    assert stats["usage"]["usage"] < 32 << 20


def test_memory_limit_below_usage_is_a_clear_error(box: Sandbox) -> None:
    m = box.manager()
    hog = box.spawn(
        sys.executable,
        "-c",
        "import sys; b = b'x' * (40 << 20); sys.stdin.readline()",
        stdin=True,
    )
    m.apply(hog.pid)
    m.set({"memory": {"limit": -1}})
    deadline = time.monotonic() + 10
    while m.stats()["memory"]["usage"]["usage"] < 30 << 20:
        assert time.monotonic() < deadline, "the child never allocated its 40 MiB"
        time.sleep(0.05)
    with pytest.raises(CgroupError, match="already uses") as info:
        m.set({"memory": {"swap": 8 << 20, "limit": 8 << 20}})
    assert info.value.field == "$.linux.resources.memory.limit"
    assert info.value.errno == errno.EBUSY
    assert hog.poll() is None  # refused, not OOM-killed


def test_oom_killer_kills_inside_the_limit(box: Sandbox) -> None:
    m = box.manager()
    hog = box.spawn(
        sys.executable,
        "-c",
        "import sys; sys.stdin.readline(); b = b'x' * (200 << 20)",
        stdin=True,
    )
    m.apply(hog.pid)
    m.set({"memory": {"limit": 48 << 20, "swap": 48 << 20}})
    assert m.oom_kill_count() == 0
    assert hog.stdin is not None
    hog.stdin.write(b"go\n")
    hog.stdin.flush()
    assert hog.wait(timeout=30) == -signal.SIGKILL
    assert m.oom_kill_count() == 1
    assert m.stats()["memory"]["oomKill"] == 1


def test_pids_limit_stops_forks(box: Sandbox) -> None:
    m = box.manager()
    shell = box.spawn(
        "sh",
        "-c",
        "read go; for i in 1 2 3 4 5 6 7 8; do sleep 1000 >/dev/null 2>&1 & done; echo spawned",
        stdin=True,
    )
    m.apply(shell.pid)
    m.set({"pids": {"limit": 4}})
    assert kernel(m, "pids", "pids.max") == "4"
    assert shell.stdin is not None
    shell.stdin.write(b"go\n")
    shell.stdin.flush()
    _out, err = shell.communicate(timeout=10)
    assert b"fork" in err.lower() or b"resource temporarily unavailable" in err.lower()
    stats = m.stats()["pids"]
    assert stats["limit"] == 4 and 1 <= stats["current"] <= 4
    assert kernel(m, "pids", "pids.events").split()[-1] != "0"  # "max N": refused forks
    assert len(m.pids()) == stats["current"]


def test_freeze_and_thaw_a_real_process(box: Sandbox) -> None:
    m = box.manager()
    sleeper = box.spawn("sleep", "1000")
    m.apply(sleeper.pid)
    assert not m.frozen()
    m.freeze()
    assert m.frozen()
    assert kernel(m, "freezer", "freezer.state") == "FROZEN"
    assert proc_state(sleeper.pid) == "D"  # a frozen task waits uninterruptibly
    m.thaw()
    assert not m.frozen()
    deadline = time.monotonic() + 2  # a thawed task runs briefly (R) before it sleeps again
    while proc_state(sleeper.pid) == "R" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc_state(sleeper.pid) == "S"
    assert load_manager(m.to_state()).frozen() is False


def test_cpu_settings_and_the_kernels_share_bounds(box: Sandbox) -> None:
    m = box.manager()
    busy = box.spawn(
        sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<0.3: pass"
    )
    m.apply(busy.pid)
    m.set({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "idle": 0}})
    assert kernel(m, "cpu", "cpu.shares") == "512"
    assert kernel(m, "cpu", "cpu.cfs_quota_us") == "50000"
    assert kernel(m, "cpu", "cpu.cfs_period_us") == "100000"
    assert kernel(m, "cpuset", "cpuset.cpus") == "0"
    with pytest.raises(CgroupError, match="minimum allowed cpu shares is 2") as info:
        m.set({"cpu": {"shares": 1}})
    assert info.value.field == "$.linux.resources.cpu.shares"
    busy.wait(timeout=10)
    cpu = m.stats()["cpu"]
    assert cpu["usage"]["total"] > 50_000_000  # ns: it ran for ~0.15 s of its 50% quota
    assert len(cpu["usage"]["percpu"]) == os.cpu_count()
    assert cpu["throttling"]["periods"] > 0


def test_realtime_runtime_refused_by_the_kernel_names_the_field(box: Sandbox) -> None:
    m = box.manager()
    with pytest.raises(CgroupError) as info:
        m.set({"cpu": {"realtimeRuntime": 1000, "realtimePeriod": 1000000}})
    # The parent has no real-time budget: the kernel says EINVAL, like it does to runc.
    assert info.value.field == "$.linux.resources.cpu.realtimeRuntime"
    assert info.value.errno == errno.EINVAL


def test_device_rules_are_enforced_by_the_kernel(box: Sandbox) -> None:
    m = box.manager()
    probe = box.spawn(
        sys.executable,
        "-c",
        "import os, sys\n"
        "sys.stdin.readline()\n"
        "for path in ('/dev/null', '/dev/kmsg'):\n"
        "    try:\n"
        "        os.close(os.open(path, os.O_RDONLY))\n"
        "        print(path, 'ok')\n"
        "    except OSError as e:\n"
        "        print(path, e.errno)\n",
        stdin=True,
    )
    m.apply(probe.pid)
    m.set({"devices": [{"allow": False, "access": "rwm"}]})
    listed = set(kernel(m, "devices", "devices.list").splitlines())
    # Exactly what runc 1.1 leaves for the same rule on this machine.
    assert listed == {
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
    }
    out, _ = probe.communicate(b"go\n", timeout=10)
    assert out.decode().split("\n")[:2] == ["/dev/null ok", f"/dev/kmsg {errno.EPERM}"]


def test_blkio_throttle_on_the_real_disk(box: Sandbox) -> None:
    if not os.path.exists("/sys/block/vda/dev"):
        pytest.skip("no /dev/vda here")
    major, minor = (int(n) for n in Path("/sys/block/vda/dev").read_text().strip().split(":"))
    m = box.manager()
    m.set(
        {
            "blockIO": {
                "weight": 300,
                "throttleReadBpsDevice": [
                    {"major": int(major), "minor": int(minor), "rate": 1 << 20}
                ],
                "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 50}],
            }
        }
    )
    assert kernel(m, "blkio", "blkio.throttle.read_bps_device") == f"{major}:{minor} {1 << 20}"
    assert kernel(m, "blkio", "blkio.throttle.write_iops_device") == f"{major}:{minor} 50"
    assert kernel(m, "blkio", "blkio.bfq.weight").split()[-1] == "300"
    assert "ioServiceBytesRecursive" in m.stats()["blkio"]


def test_controllers_this_host_lacks_fail_like_runc(box: Sandbox) -> None:
    m = box.manager()
    for resources, field in [
        ({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]}, "hugepageLimits"),
        ({"network": {"classID": 0x100001}}, "network.classID"),
        ({"unified": {"pids.max": "5"}}, "unified"),
    ]:
        with pytest.raises(CgroupError) as info:
            m.set(resources)
        assert info.value.field == f"$.linux.resources.{field}"


def test_destroy_waits_out_ebusy_then_reports_it(box: Sandbox) -> None:
    m = box.manager()
    sleeper = box.spawn("sleep", "1000")
    m.apply(sleeper.pid)
    started = time.monotonic()
    with pytest.raises(CgroupError) as info:
        m.destroy()
    assert info.value.errno == errno.EBUSY
    assert time.monotonic() - started < 3
    sleeper.kill()
    sleeper.wait()
    m.destroy()
    assert not m.exists() and m.pids() == []
    m.destroy()


def test_v2_driver_on_the_real_cgroup2_mount(box: Sandbox) -> None:
    """The unified mount holds no controller we use, but freezing and pids are the kernel's."""
    unified = f"{ROOT}/unified"
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    with open("/proc/self/cgroup") as f:
        self_cgroup = f.read()
    host = build_host(unified, mountinfo, self_cgroup)
    assert host.mode == "v2"
    m = box.manager(host=host)
    assert m.to_state()["path"] == f"{unified}{box.path()}"
    sleeper = box.spawn(
        sys.executable,
        "-c",
        "import time\nwhile True:\n    print(time.time(), flush=True)\n    time.sleep(0.01)",
    )
    m.apply(sleeper.pid)
    assert proc_cgroups(sleeper.pid)[""] == box.path()
    assert m.pids() == [sleeper.pid]
    m.freeze()
    assert m.frozen()
    assert "frozen 1" in Path(m.to_state()["path"], "cgroup.events").read_text()
    m.thaw()
    assert not m.frozen()
    with pytest.raises(CgroupError) as info:
        m.set({"pids": {"limit": 5}})  # no pids controller in this hierarchy
    assert info.value.field == "$.linux.resources.pids.limit"
    assert info.value.errno == errno.ENOENT


def unified_host():  # type: ignore[no-untyped-def]
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    with open("/proc/self/cgroup") as f:
        self_cgroup = f.read()
    return build_host(f"{ROOT}/unified", mountinfo, self_cgroup)


PROBE = (
    "import os, sys\n"
    "for line in sys.stdin:\n"
    "    for path in ('/dev/null', '/dev/zero', '/dev/kmsg'):\n"
    "        try:\n"
    "            os.close(os.open(path, os.O_RDONLY))\n"
    "            print(path, 'ok', flush=True)\n"
    "        except OSError as e:\n"
    "            print(path, e.errno, flush=True)\n"
)


def probe_opens(probe: subprocess.Popen[bytes]) -> dict[str, str]:
    assert probe.stdin is not None and probe.stdout is not None
    probe.stdin.write(b"go\n")
    probe.stdin.flush()
    return dict(probe.stdout.readline().decode().split() for _ in range(3))


def test_v2_device_rules_are_an_ebpf_program_the_kernel_enforces(box: Sandbox) -> None:
    m = box.manager(host=unified_host())
    probe = box.spawn(sys.executable, "-c", PROBE, stdin=True)
    m.apply(probe.pid)
    assert probe_opens(probe) == {"/dev/null": "ok", "/dev/zero": "ok", "/dev/kmsg": "ok"}
    m.set({"devices": [{"allow": False, "access": "rwm"}]})
    denied = str(errno.EPERM)
    assert probe_opens(probe) == {"/dev/null": "ok", "/dev/zero": "ok", "/dev/kmsg": denied}
    # An update replaces the program. A deny of /dev/zero is undone by runc's defaults,
    # which come after the spec's rules; the deny-all start still denies /dev/kmsg.
    m.set({"devices": [{"allow": False, "type": "c", "major": 1, "minor": 5, "access": "r"}]})
    assert probe_opens(probe) == {"/dev/null": "ok", "/dev/zero": "ok", "/dev/kmsg": denied}
    m.set({"devices": [{"allow": True, "access": "rwm"}]})
    assert probe_opens(probe) == {"/dev/null": "ok", "/dev/zero": "ok", "/dev/kmsg": "ok"}
    from lowrun.cgroups.ebpf import attached_program_ids

    fd = os.open(m.to_state()["path"], os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(attached_program_ids(fd)) == 1
    finally:
        os.close(fd)
