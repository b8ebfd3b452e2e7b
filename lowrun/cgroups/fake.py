"""A fake cgroupfs in a temporary directory, for unit tests that need no root.

`FakeCgroupFs` behaves like the kernel where the drivers depend on it: `mkdir` makes
a cgroup with the control files the kernel documents for its hierarchy (and only
those, so a write to a file a real cgroup lacks fails with ENOENT), writes to
"command" files (devices.allow, io.max, subtree_control, ...) are kept line by line,
freezing is immediate, `rmdir` of a cgroup with processes is EBUSY. Every write is
also logged in order in `writes`, and `fail` injects an errno for a file.

`v1_host()` and `v2_host()` lay out a tree and return the CgroupHost that
`create_manager(..., host=...)` takes; they go through the real mountinfo parser.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from lowrun.cgroups.fs import CgroupFs
from lowrun.cgroups.host import CgroupHost, build_host

CORE_V1 = {
    "cgroup.procs": "",
    "tasks": "",
    "notify_on_release": "0",
    "cgroup.clone_children": "0",
}

V1_FILES: dict[str, dict[str, str]] = {
    "cpuset": {
        "cpuset.cpus": "",
        "cpuset.mems": "",
        "cpuset.effective_cpus": "",
        "cpuset.effective_mems": "",
    },
    "cpu": {
        "cpu.shares": "1024",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "-1",
        "cpu.rt_period_us": "1000000",
        "cpu.rt_runtime_us": "0",
        "cpu.idle": "0",
        "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
    },
    "cpuacct": {
        "cpuacct.usage": "0",
        "cpuacct.usage_percpu": "0 0",
        "cpuacct.usage_all": "cpu user system\n0 0 0\n1 0 0\n",
        "cpuacct.stat": "user 0\nsystem 0\n",
    },
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712",
        "memory.soft_limit_in_bytes": "9223372036854771712",
        "memory.memsw.limit_in_bytes": "9223372036854771712",
        "memory.usage_in_bytes": "0",
        "memory.max_usage_in_bytes": "0",
        "memory.failcnt": "0",
        "memory.memsw.usage_in_bytes": "0",
        "memory.memsw.max_usage_in_bytes": "0",
        "memory.memsw.failcnt": "0",
        "memory.kmem.limit_in_bytes": "9223372036854771712",
        "memory.kmem.usage_in_bytes": "0",
        "memory.kmem.max_usage_in_bytes": "0",
        "memory.kmem.failcnt": "0",
        "memory.swappiness": "60",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.stat": "cache 0\nrss 0\n",
        "memory.use_hierarchy": "1",
    },
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm"},
    "freezer": {"freezer.state": "THAWED", "freezer.self_freezing": "0"},
    "blkio": {
        "blkio.bfq.weight": "100",
        "blkio.bfq.weight_device": "",
        "blkio.throttle.read_bps_device": "",
        "blkio.throttle.write_bps_device": "",
        "blkio.throttle.read_iops_device": "",
        "blkio.throttle.write_iops_device": "",
        "blkio.throttle.io_service_bytes_recursive": "Total 0\n",
        "blkio.throttle.io_serviced_recursive": "Total 0\n",
    },
    "pids": {"pids.max": "max", "pids.current": "0"},
    "hugetlb": {
        "hugetlb.2MB.limit_in_bytes": "9223372036854771712",
        "hugetlb.2MB.usage_in_bytes": "0",
        "hugetlb.1GB.limit_in_bytes": "9223372036854771712",
        "hugetlb.1GB.usage_in_bytes": "0",
    },
    "net_cls": {"net_cls.classid": "0"},
    "net_prio": {"net_prio.ifpriomap": "", "net_prio.prioidx": "1"},
    "rdma": {"rdma.max": ""},
    "name=systemd": {},
}

CORE_V2 = {
    "cgroup.procs": "",
    "cgroup.threads": "",
    "cgroup.controllers": "",
    "cgroup.subtree_control": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.freeze": "0",
    "cgroup.kill": "",
    "cgroup.type": "domain",
    "cgroup.stat": "nr_descendants 0\nnr_dying_descendants 0\n",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}

V2_FILES: dict[str, dict[str, str]] = {
    "cpu": {
        "cpu.weight": "100",
        "cpu.weight.nice": "0",
        "cpu.max": "max 100000",
        "cpu.idle": "0",
    },
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": "0-1"},
    "memory": {
        "memory.current": "0",
        "memory.min": "0",
        "memory.low": "0",
        "memory.high": "max",
        "memory.max": "max",
        "memory.peak": "0",
        "memory.swap.current": "0",
        "memory.swap.max": "max",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
        "memory.stat": "anon 0\nfile 0\n",
    },
    "io": {"io.max": "", "io.weight": "default 100", "io.stat": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "hugetlb": {
        "hugetlb.2MB.max": "max",
        "hugetlb.2MB.current": "0",
        "hugetlb.2MB.events": "max 0\n",
        "hugetlb.1GB.max": "max",
        "hugetlb.1GB.current": "0",
        "hugetlb.1GB.events": "max 0\n",
    },
    "rdma": {"rdma.max": ""},
}

# Files that take commands: every write adds a line instead of replacing the content.
APPEND_FILES = frozenset(
    {
        "cgroup.procs",
        "tasks",
        "cgroup.subtree_control",
        "devices.allow",
        "devices.deny",
        "io.max",
        "io.weight",
        "io.bfq.weight",
        "net_prio.ifpriomap",
        "rdma.max",
        "blkio.bfq.weight_device",
        "blkio.weight_device",
        "blkio.leaf_weight_device",
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
        "blkio.throttle.read_iops_device",
        "blkio.throttle.write_iops_device",
    }
)


class FakeCgroupFs(CgroupFs):
    """Plain files in a directory standing in for cgroupfs (see the module docstring)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.templates: dict[str, dict[str, str]] = {}  # mountpoint → files of a new cgroup
        self.writes: list[tuple[str, str]] = []
        self.fail: dict[str, int] = {}  # path → errno for writes (and rmdir of a directory)
        self.busy: dict[str, int] = {}  # directory → how many rmdir calls return EBUSY
        self.programs: dict[str, bytes] = {}  # cgroup v2 directory → its device program

    def _template(self, path: str) -> dict[str, str] | None:
        best = None
        for mountpoint in self.templates:
            if path.startswith(mountpoint + "/") and (best is None or len(mountpoint) > len(best)):
                best = mountpoint
        return None if best is None else self.templates[best]

    def mkdir(self, path: str) -> bool:
        created = super().mkdir(path)
        template = self._template(path)
        if created and template is not None:
            for name, content in template.items():
                with open(os.path.join(path, name), "w") as f:
                    f.write(content)
        return created

    def write(self, path: str, value: str) -> None:
        self.writes.append((path, value))
        if path in self.fail:
            code = self.fail[path]
            raise OSError(code, os.strerror(code), path)
        if not os.path.isfile(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        name = os.path.basename(path)
        if name in APPEND_FILES:
            existing = Path(path).read_text()
            if existing and not existing.endswith("\n"):
                existing += "\n"
            Path(path).write_text(existing + value.strip() + "\n")
        else:
            with open(path, "w") as f:
                f.write(value)
        if name == "cgroup.freeze":
            events = os.path.join(os.path.dirname(path), "cgroup.events")
            with open(events, "w") as f:
                f.write(f"populated 1\nfrozen {value.strip()}\n")

    def attach_device_program(self, path: str, code: bytes) -> None:
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        self.programs[path] = code

    def lines(self, path: str) -> list[str]:
        """The lines written to a command file, in order."""
        with open(path) as f:
            return [line for line in f.read().splitlines() if line]

    def exit(self, pid: int) -> None:
        """The process `pid` exits: it leaves every cgroup.procs of the tree."""
        for directory, _dirs, files in os.walk(self.base):
            if "cgroup.procs" in files:
                procs = Path(directory, "cgroup.procs")
                kept = [p for p in procs.read_text().split() if p != str(pid)]
                procs.write_text("".join(f"{p}\n" for p in kept))

    def rmdir(self, path: str) -> None:
        if path in self.fail:
            code = self.fail[path]
            raise OSError(code, os.strerror(code), path)
        if self.busy.get(path, 0) > 0:
            self.busy[path] -= 1
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        procs = os.path.join(path, "cgroup.procs")
        if os.path.exists(procs) and Path(procs).read_text().strip():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), path)
        for entry in os.scandir(path):
            os.unlink(entry.path)
        os.rmdir(path)


def _write_files(directory: str, files: dict[str, str]) -> None:
    os.makedirs(directory, exist_ok=True)
    for name, content in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(content)


def v1_host(
    base: str,
    *,
    controllers: tuple[str, ...] = (
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "blkio",
        "pids",
        "name=systemd",
    ),
    hybrid: bool = True,
    own: dict[str, str] | None = None,
) -> CgroupHost:
    """A v1 tree like this machine's: one mount per controller, cgroup2 at `unified`.

    `own` maps a subsystem ("" for cgroup2) to this process's cgroup in it; default "/".
    """
    root = os.path.join(base, "cgroup")
    fs = FakeCgroupFs(base)
    own = own or {}
    mountinfo = [f"31 23 0:28 / {root} rw,relatime - tmpfs tmpfs rw,mode=755"]
    self_cgroup = []
    for n, name in enumerate(controllers):
        dirname = name.removeprefix("name=")
        mountpoint = os.path.join(root, dirname)
        files = {**CORE_V1, **V1_FILES.get(name, {})}
        _write_files(mountpoint, files)
        if name == "cpuset":
            _write_files(mountpoint, {"cpuset.cpus": "0-1", "cpuset.mems": "0"})
        fs.templates[mountpoint] = files
        mountinfo.append(
            f"{32 + n} 31 0:{29 + n} / {mountpoint} rw,relatime - cgroup cgroup rw,{name}"
        )
        self_cgroup.append(f"{n + 1}:{name}:{own.get(name, '/')}")
        _make_own(fs, mountpoint, own.get(name, "/"))
    if hybrid:
        mountpoint = os.path.join(root, "unified")
        _write_files(mountpoint, {**CORE_V2, "cgroup.controllers": "hugetlb"})
        fs.templates[mountpoint] = dict(CORE_V2)
        mountinfo.append(f"50 31 0:50 / {mountpoint} rw,relatime - cgroup2 cgroup2 rw")
        _make_own(fs, mountpoint, own.get("", "/"))
    self_cgroup.append(f"0::{own.get('', '/')}")
    return build_host(root, "\n".join(mountinfo) + "\n", "\n".join(self_cgroup) + "\n", fs)


def v2_host(
    base: str,
    *,
    controllers: tuple[str, ...] = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma"),
    own: str = "/",
    bfq: bool = False,
) -> CgroupHost:
    """A unified (v2-only) tree; new cgroups get the files of every listed controller."""
    root = os.path.join(base, "cgroup")
    fs = FakeCgroupFs(base)
    child: dict[str, str] = dict(CORE_V2)
    child["cgroup.controllers"] = " ".join(controllers)
    for name in controllers:
        child.update(V2_FILES.get(name, {}))
    if bfq and "io" in controllers:
        child["io.bfq.weight"] = "default 100"
    _write_files(root, {**CORE_V2, "cgroup.controllers": " ".join(controllers)})
    fs.templates[root] = child
    _make_own(fs, root, own)
    mountinfo = f"31 23 0:28 / {root} rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"
    return build_host(root, mountinfo, f"0::{own}\n", fs)


def _make_own(fs: FakeCgroupFs, mountpoint: str, own: str) -> None:
    current = mountpoint
    for part in [p for p in own.split("/") if p]:
        current = os.path.join(current, part)
        fs.mkdir(current)
