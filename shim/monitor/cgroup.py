"""Read a container's cgroup (v1 or v2) from the pid of a process inside it.

Runtime-agnostic: the paths come from /proc/PID/cgroup, so this works whatever
cgroupsPath the runtime chose. Used by the monitor (OOM kills) and shimd (Stats).
Stdlib only.
"""

from __future__ import annotations

import os

CGROUP_ROOT = "/sys/fs/cgroup"


def paths(pid: int) -> dict[str, str]:
    """Controller name -> directory of the cgroup `pid` is in ("" key: the v2 hierarchy)."""
    result: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if not controllers:
                if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
                    result[""] = CGROUP_ROOT + path
                continue
            for name in controllers.split(","):
                name = name.removeprefix("name=")
                base = os.path.join(CGROUP_ROOT, controllers)
                if not os.path.isdir(base):
                    base = os.path.join(CGROUP_ROOT, name)
                result[name] = base + path
    return result


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _read_int(path: str, default: int = 0) -> int:
    try:
        text = _read(path).strip()
    except OSError:
        return default
    if text == "max":
        return default
    try:
        return int(text)
    except ValueError:
        return default


def _keyed(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = _read(path)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def memory_dir(cg: dict[str, str]) -> tuple[str, int] | None:
    """(directory, version) of the memory controller, if the container has one."""
    if "memory" in cg:
        return cg["memory"], 1
    if "" in cg:
        return cg[""], 2
    return None


def oom_kills(cg: dict[str, str]) -> int:
    """How many processes the kernel's OOM killer killed in this cgroup."""
    mem = memory_dir(cg)
    if mem is None:
        return 0
    directory, version = mem
    name = "memory.oom_control" if version == 1 else "memory.events"
    return _keyed(os.path.join(directory, name)).get("oom_kill", 0)


def stats(cg: dict[str, str]) -> dict[str, int]:
    """Memory, CPU and pids figures of the cgroup, in bytes, nanoseconds and counts."""
    out: dict[str, int] = {}
    mem = memory_dir(cg)
    if mem and mem[1] == 1:
        d = mem[0]
        stat = _keyed(os.path.join(d, "memory.stat"))
        out["memory_usage"] = _read_int(os.path.join(d, "memory.usage_in_bytes"))
        out["memory_max_usage"] = _read_int(os.path.join(d, "memory.max_usage_in_bytes"))
        out["memory_limit"] = _read_int(os.path.join(d, "memory.limit_in_bytes"))
        out["memory_cache"] = stat.get("total_cache", stat.get("cache", 0))
        out["memory_rss"] = stat.get("total_rss", stat.get("rss", 0))
    elif mem:
        d = mem[0]
        stat = _keyed(os.path.join(d, "memory.stat"))
        out["memory_usage"] = _read_int(os.path.join(d, "memory.current"))
        out["memory_max_usage"] = _read_int(os.path.join(d, "memory.peak"))
        out["memory_limit"] = _read_int(os.path.join(d, "memory.max"))
        out["memory_cache"] = stat.get("file", 0)
        out["memory_rss"] = stat.get("anon", 0)
    out["oom_kills"] = oom_kills(cg)
    if "cpuacct" in cg:
        d = cg["cpuacct"]
        out["cpu_usage_ns"] = _read_int(os.path.join(d, "cpuacct.usage"))
        out["cpu_user_ns"] = _read_int(os.path.join(d, "cpuacct.usage_user"))
        out["cpu_system_ns"] = _read_int(os.path.join(d, "cpuacct.usage_sys"))
    elif "" in cg:
        stat = _keyed(os.path.join(cg[""], "cpu.stat"))
        out["cpu_usage_ns"] = stat.get("usage_usec", 0) * 1000
        out["cpu_user_ns"] = stat.get("user_usec", 0) * 1000
        out["cpu_system_ns"] = stat.get("system_usec", 0) * 1000
    pids_dir = cg.get("pids") or cg.get("")
    if pids_dir:
        out["pids_current"] = _read_int(os.path.join(pids_dir, "pids.current"))
        out["pids_limit"] = _read_int(os.path.join(pids_dir, "pids.max"))
    return out
