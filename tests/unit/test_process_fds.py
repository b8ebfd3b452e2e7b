"""process.close_inherited_from: the caller's leaked fds go, the runtime's own stay."""

from __future__ import annotations

import os

from lowrun import process


def test_closes_only_inheritable_fds_past_first() -> None:
    r, w = os.pipe()  # non-inheritable, as everything Python opens
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(r)
            src = os.open(os.devnull, os.O_RDONLY)
            leaked = os.dup2(src, 60, inheritable=True)  # what a caller leaks
            own = os.dup2(src, 61, inheritable=False)  # what Python opens
            preserved = os.dup2(src, 5, inheritable=True)  # below first: --preserve-fds
            process.close_inherited_from(6)
            alive = {fd: _is_open(fd) for fd in (leaked, own, preserved)}
            expected = {leaked: False, own: True, preserved: True}
            code = 0 if alive == expected else 2
        finally:
            os._exit(code)
    os.close(w)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
