"""The runtime's interpreter out of the container's reach (the CVE-2019-5736 class).

While lowrun's stages run in a container's pid namespace (the init until it execs, an
`exec` child until it does), /proc/PID/exe of them is the host's Python interpreter.
They are not dumpable (PR_SET_DUMPABLE 0), so a container process needs CAP_SYS_PTRACE
in the host's user namespace to open that link at all. A container that holds it
(bounding set, no user namespace of its own) could keep an O_PATH fd of the
interpreter and reopen it for writing once no process executes it any more (until
then the kernel answers ETXTBSY). For such containers only, lowrun re-executes itself,
before anything is created, from a detached read-only bind mount of the interpreter
(open_tree + mount_setattr): /proc/PID/exe then leads to a file on a read-only mount
and a write through it fails with EROFS, as runc's read-only bind of its own binary.
The cost, one more interpreter start, is paid by those containers alone.
"""

from __future__ import annotations

import os
import sys

from lowrun import syscalls
from lowrun.errors import LowrunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

GUARD_ENV = "_LOWRUN_EXE_READ_ONLY"
"""Set across the re-exec, so that a failure to get a read-only exe cannot loop."""


def needs_guard(config: dict[str, Any], *processes: dict[str, Any]) -> bool:
    """True if a process of the container may ptrace the runtime's stages: it has
    CAP_SYS_PTRACE in a bounding set and shares the host's user namespace."""
    linux = config.get("linux") or {}
    if any(ns.get("type") == "user" for ns in linux.get("namespaces") or []):
        return False
    for proc in (config.get("process") or {}, *processes):
        bounding = (proc.get("capabilities") or {}).get("bounding") or []
        if "CAP_SYS_PTRACE" in bounding:
            return True
    return False


def exe_is_read_only() -> bool:
    return bool(os.statvfs("/proc/self/exe").f_flag & os.ST_RDONLY)


def ensure(config: dict[str, Any], *processes: dict[str, Any]) -> None:
    """Return once this process runs from a read-only interpreter, if the container
    needs it; otherwise re-exec the same command line from one (never returns)."""
    if not needs_guard(config, *processes) or not _is_lowrun_command():
        return
    if exe_is_read_only():
        os.environ.pop(GUARD_ENV, None)
        return
    if os.environ.get(GUARD_ENV):
        raise LowrunError("could not run from a read-only copy of the interpreter "
                          "(needed for a container with CAP_SYS_PTRACE)")
    reexec_read_only()


def _is_lowrun_command() -> bool:
    """Only the `lowrun` command re-executes itself; a program that embeds the library
    keeps its own executable (and the protection of non-dumpable stages alone)."""
    return os.path.basename(sys.argv[0]) == "lowrun"


def reexec_read_only() -> NoReturn:
    """execve the running interpreter through a read-only detached bind mount of it,
    with the same argv (argv[0] kept, so that the venv is found as before)."""
    exe = os.readlink("/proc/self/exe")
    tree = syscalls.open_tree(exe)
    try:
        syscalls.mount_setattr(tree, syscalls.MOUNT_ATTR_RDONLY, recursive=False)
        fd = os.open(f"/proc/self/fd/{tree}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(tree)
    env = dict(os.environ)
    env[GUARD_ENV] = "1"
    os.execve(f"/proc/self/fd/{fd}", list(sys.orig_argv), env)
