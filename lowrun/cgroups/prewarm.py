"""Take the first cgroup migration's cost off lowrun's critical path.

Moving a process between cgroups takes the kernel's cgroup_threadgroup_rwsem for
writing; when it is idle, that waits for an RCU grace period (10-15 ms measured here,
the single largest cost of `lowrun run`), and for about one grace period afterwards
other migrations pass without waiting. `start()` makes that first, slow migration a
no-op one (this process into the cgroup it is already in) on a background thread,
while lowrun loads the bundle and forks; the real migration of the init follows within
the window and costs ~0.3 ms instead. It is only an optimization: any failure is ignored.
"""

from __future__ import annotations

import _thread
import os

from lowrun.cgroups.host import parse_proc_cgroup

CGROUP_ROOT = "/sys/fs/cgroup"
PREFERRED = ("pids", "memory", "cpu")


def _own_procs_file() -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            text = f.read()
    except OSError:
        return None
    paths = parse_proc_cgroup(text)
    if "" in paths:
        paths["unified"] = paths.pop("")
    for name in (*PREFERRED, "unified"):
        if name not in paths:
            continue
        base = CGROUP_ROOT if name == "unified" and not os.path.isdir(
            f"{CGROUP_ROOT}/unified") else f"{CGROUP_ROOT}/{name}"
        candidate = f"{base}{paths[name]}/cgroup.procs"
        if os.path.exists(candidate):
            return candidate
    return None


def _migrate_self(procs: str) -> None:
    try:
        fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def start() -> None:
    """Begin the no-op migration on a background thread; returns at once."""
    procs = _own_procs_file()
    if procs is not None:
        _thread.start_new_thread(_migrate_self, (procs,))
