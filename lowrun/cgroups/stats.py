"""Usage figures read from a container's cgroups, in the shape of `runc events --stats`.

{"cpu": {"usage": {"total", "percpu", "percpu_kernel", "percpu_user", "kernel", "user"},
         "throttling": {"periods", "throttledPeriods", "throttledTime"}},
 "memory": {"cache", "usage"|"swap"|"kernel"|"kernelTCP": {"limit", "usage", "max", "failcnt"},
            "raw": {...memory.stat...}, "oomKill"},
 "pids": {"current", "limit"},
 "blkio": {"ioServiceBytesRecursive": [{"major", "minor", "op", "value"}],
           "ioServicedRecursive": [...]},
 "hugetlb": {"2MB": {"usage", "max", "failcnt"}}}
Times are nanoseconds, sizes bytes; a limit of 0 in "pids" means unlimited (runc's way).
A controller the container does not have leaves its section out.
"""

from __future__ import annotations

import os

from lowrun.cgroups.fs import CgroupFs, parse_uint, read_keyed, read_optional, read_uint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HUGEPAGES_DIR = "/sys/kernel/mm/hugepages"


def _entry(
    fs: CgroupFs, path: str, prefix: str, limit_name: str = "limit_in_bytes"
) -> dict[str, int]:
    return {
        "limit": read_uint(fs, path, f"{prefix}.{limit_name}") or 0,
        "usage": read_uint(fs, path, f"{prefix}.usage_in_bytes") or 0,
        "max": read_uint(fs, path, f"{prefix}.max_usage_in_bytes") or 0,
        "failcnt": read_uint(fs, path, f"{prefix}.failcnt") or 0,
    }


def _ints(text: str | None) -> list[int]:
    return [int(x) for x in (text or "").split() if x.lstrip("-").isdigit()]


def _blkio_entries(text: str | None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for line in (text or "").splitlines():
        fields = line.replace(":", " ").split()
        if len(fields) < 3 or not fields[0].isdigit():
            continue  # the "Total N" line
        op = fields[2] if len(fields) == 4 else ""
        entries.append(
            {"major": int(fields[0]), "minor": int(fields[1]), "op": op, "value": int(fields[-1])}
        )
    return entries


def hugepage_sizes() -> list[str]:
    """Page sizes as cgroup file names use them: hugepages-2048kB → 2MB."""
    sizes: list[str] = []
    try:
        names = os.listdir(HUGEPAGES_DIR)
    except OSError:
        return sizes
    for name in sorted(names):
        kb = name.removeprefix("hugepages-").removesuffix("kB")
        if not kb.isdigit():
            continue
        n = int(kb)
        if n % (1024 * 1024) == 0:
            sizes.append(f"{n // (1024 * 1024)}GB")
        elif n % 1024 == 0:
            sizes.append(f"{n // 1024}MB")
        else:
            sizes.append(f"{n}KB")
    return sizes


def v1_stats(fs: CgroupFs, paths: dict[str, str]) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    if "cpuacct" in paths or "cpu" in paths:
        stats["cpu"] = _v1_cpu(fs, paths)
    if "memory" in paths:
        path = paths["memory"]
        raw = read_keyed(fs, path, "memory.stat")
        stats["memory"] = {
            "cache": raw.get("cache", 0),
            "usage": _entry(fs, path, "memory"),
            "swap": _entry(fs, path, "memory.memsw"),
            "kernel": _entry(fs, path, "memory.kmem"),
            "kernelTCP": _entry(fs, path, "memory.kmem.tcp"),
            "raw": raw,
            "oomKill": read_keyed(fs, path, "memory.oom_control").get("oom_kill", 0),
        }
    if "pids" in paths:
        stats["pids"] = _pids(fs, paths["pids"])
    if "blkio" in paths:
        stats["blkio"] = _v1_blkio(fs, paths["blkio"])
    if "hugetlb" in paths:
        stats["hugetlb"] = {
            size: {
                "usage": read_uint(fs, paths["hugetlb"], f"hugetlb.{size}.usage_in_bytes") or 0,
                "max": read_uint(fs, paths["hugetlb"], f"hugetlb.{size}.max_usage_in_bytes") or 0,
                "failcnt": read_uint(fs, paths["hugetlb"], f"hugetlb.{size}.failcnt") or 0,
            }
            for size in hugepage_sizes()
        }
    return stats


def _v1_cpu(fs: CgroupFs, paths: dict[str, str]) -> dict[str, Any]:
    usage: dict[str, Any] = {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": []}
    usage["kernel"] = usage["user"] = 0
    acct = paths.get("cpuacct")
    if acct is not None:
        usage["total"] = read_uint(fs, acct, "cpuacct.usage") or 0
        usage["percpu"] = _ints(read_optional(fs, acct, "cpuacct.usage_percpu"))
        for line in (read_optional(fs, acct, "cpuacct.usage_all") or "").splitlines()[1:]:
            cols = line.split()
            if len(cols) == 3 and all(c.isdigit() for c in cols):
                usage["percpu_user"].append(int(cols[1]))
                usage["percpu_kernel"].append(int(cols[2]))
        ticks = read_keyed(fs, acct, "cpuacct.stat")
        hz = os.sysconf("SC_CLK_TCK") or 100
        usage["user"] = ticks.get("user", 0) * 1_000_000_000 // hz
        usage["kernel"] = ticks.get("system", 0) * 1_000_000_000 // hz
    throttling = {"periods": 0, "throttledPeriods": 0, "throttledTime": 0}
    if "cpu" in paths:
        cpu_stat = read_keyed(fs, paths["cpu"], "cpu.stat")
        throttling = {
            "periods": cpu_stat.get("nr_periods", 0),
            "throttledPeriods": cpu_stat.get("nr_throttled", 0),
            "throttledTime": cpu_stat.get("throttled_time", 0),
        }
    return {"usage": usage, "throttling": throttling}


def _pids(fs: CgroupFs, path: str) -> dict[str, int]:
    limit_text = read_optional(fs, path, "pids.max")
    limit = 0 if limit_text in (None, "", "max") else parse_uint(limit_text or "0", path)
    return {"current": read_uint(fs, path, "pids.current") or 0, "limit": limit}


# runc's order of preference: the first group whose first file has entries wins.
_BLKIO_GROUPS = (
    ("blkio.bfq.io_service_bytes_recursive", "blkio.bfq.io_serviced_recursive"),
    ("blkio.io_service_bytes_recursive", "blkio.io_serviced_recursive"),
    ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_serviced_recursive"),
    ("blkio.throttle.io_service_bytes", "blkio.throttle.io_serviced"),
)


def _v1_blkio(fs: CgroupFs, path: str) -> dict[str, Any]:
    for bytes_name, ios_name in _BLKIO_GROUPS:
        service_bytes = _blkio_entries(read_optional(fs, path, bytes_name))
        if service_bytes or bytes_name == _BLKIO_GROUPS[-1][0]:
            return {
                "ioServiceBytesRecursive": service_bytes,
                "ioServicedRecursive": _blkio_entries(read_optional(fs, path, ios_name)),
            }
    return {"ioServiceBytesRecursive": [], "ioServicedRecursive": []}


def v2_stats(fs: CgroupFs, path: str) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    cpu_stat = read_keyed(fs, path, "cpu.stat")
    stats["cpu"] = {
        "usage": {
            "total": cpu_stat.get("usage_usec", 0) * 1000,
            "percpu": [],
            "percpu_kernel": [],
            "percpu_user": [],
            "user": cpu_stat.get("user_usec", 0) * 1000,
            "kernel": cpu_stat.get("system_usec", 0) * 1000,
        },
        "throttling": {
            "periods": cpu_stat.get("nr_periods", 0),
            "throttledPeriods": cpu_stat.get("nr_throttled", 0),
            "throttledTime": cpu_stat.get("throttled_usec", 0) * 1000,
        },
    }
    if read_optional(fs, path, "memory.current") is not None:
        raw = read_keyed(fs, path, "memory.stat")
        usage = read_uint(fs, path, "memory.current") or 0
        limit = read_uint(fs, path, "memory.max") or 0
        swap_usage = read_uint(fs, path, "memory.swap.current") or 0
        swap_limit = read_uint(fs, path, "memory.swap.max") or 0
        events = read_keyed(fs, path, "memory.events")
        # v1 reports swap as memory+swap: do the same, as runc does for compatibility.
        swap_total = swap_limit if swap_limit >= 2**64 - 1 else min(swap_limit + limit, 2**64 - 1)
        stats["memory"] = {
            "cache": raw.get("file", 0),
            "usage": {
                "limit": limit,
                "usage": usage,
                "max": read_uint(fs, path, "memory.peak") or 0,
                "failcnt": events.get("max", 0),
            },
            "swap": {"limit": swap_total, "usage": swap_usage + usage, "max": 0, "failcnt": 0},
            "raw": raw,
            "oomKill": events.get("oom_kill", 0),
        }
    if read_optional(fs, path, "pids.current") is not None:
        stats["pids"] = _pids(fs, path)
    io_stat = read_optional(fs, path, "io.stat")
    if io_stat is not None:
        stats["blkio"] = _v2_io(io_stat)
    sizes = [s for s in hugepage_sizes() if fs.exists(os.path.join(path, f"hugetlb.{s}.current"))]
    if sizes:
        stats["hugetlb"] = {
            s: {
                "usage": read_uint(fs, path, f"hugetlb.{s}.current") or 0,
                "max": read_uint(fs, path, f"hugetlb.{s}.max") or 0,
                "failcnt": read_keyed(fs, path, f"hugetlb.{s}.events").get("max", 0),
            }
            for s in sizes
        }
    return stats


def _v2_io(text: str) -> dict[str, Any]:
    names = {
        "rbytes": ("Read", 0),
        "wbytes": ("Write", 0),
        "rios": ("Read", 1),
        "wios": ("Write", 1),
    }
    tables: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for line in text.splitlines():
        fields = line.split()
        if not fields or ":" not in fields[0]:
            continue
        major, _, minor = fields[0].partition(":")
        for item in fields[1:]:
            key, _, value = item.partition("=")
            if key in names and value.isdigit():
                op, table = names[key]
                tables[table].append(
                    {"major": int(major), "minor": int(minor), "op": op, "value": int(value)}
                )
    return {"ioServiceBytesRecursive": tables[0], "ioServicedRecursive": tables[1]}
