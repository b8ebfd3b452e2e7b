"""Run a function in a forked child in new namespaces and bring back what it saw.

The child unshares the namespaces asked for (a mount namespace at least), makes /
a recursive slave so that nothing it mounts can reach the host, calls the function,
and writes its JSON result, or the exception it raised, through a pipe. Its mount
namespace dies with it: nothing it mounted outlives it.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from typing import Any

from lowrun import syscalls as sc


class ChildFailed(Exception):
    """The function raised in the child: its exception's class name, message and errno."""

    def __init__(self, kind: str, message: str, err: int | None, trace: str) -> None:
        super().__init__(f"{kind}: {message}\n{trace}")
        self.kind = kind
        self.message = message
        self.errno = err


def _write_map(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _child(func: Callable[[], Any], flags: int, userns: bool, wfd: int) -> None:
    try:
        if userns:
            uid, gid = os.geteuid(), os.getegid()
            sc.unshare(sc.CLONE_NEWUSER | flags)
            _write_map("/proc/self/setgroups", "deny")
            _write_map("/proc/self/uid_map", f"0 {uid} 1")
            _write_map("/proc/self/gid_map", f"0 {gid} 1")
        else:
            sc.unshare(flags)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_SLAVE)
        if flags & sc.CLONE_NEWPID:
            pid = os.fork()
            if pid:
                _, status = os.waitpid(pid, 0)
                os._exit(os.waitstatus_to_exitcode(status))
        result: dict[str, Any] = {"ok": func()}
    except BaseException as exc:
        result = {
            "error": type(exc).__name__,
            "message": str(exc),
            "errno": getattr(exc, "errno", None),
            "trace": traceback.format_exc(),
        }
    try:
        os.write(wfd, json.dumps(result, default=str).encode())
    finally:
        os._exit(0)


def run_in_child(
    func: Callable[[], Any],
    *,
    flags: int = sc.CLONE_NEWNS,
    userns: bool = False,
) -> Any:
    """func()'s result, computed in a child with `flags` unshared (CLONE_NEWNS at least).

    With `userns` the child also gets a user namespace where it is root, mapped to
    the caller's uid. With CLONE_NEWPID, func runs as PID 1 of the new namespace.
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _child(func, flags | sc.CLONE_NEWNS, userns, wfd)
    os.close(wfd)
    chunks = []
    with os.fdopen(rfd, "rb") as r:
        while chunk := r.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        raise ChildFailed("NoResult", f"child exited with status {status} and no result", None, "")
    result = json.loads(b"".join(chunks))
    if "error" in result:
        raise ChildFailed(result["error"], result["message"], result["errno"], result["trace"])
    return result["ok"]


def read_mounts() -> str:
    with open("/proc/self/mounts") as f:
        return f.read()
