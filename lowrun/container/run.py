"""`run`: create, start and wait, forwarding signals to the init; then delete."""

from __future__ import annotations

import os
from types import FrameType

from lowrun import signals
from lowrun.container import lifecycle
from lowrun.container.create import CreateOptions, create
from lowrun.errors import suppress
from lowrun.state import StateStore


def run(store: StateStore, container_id: str, opts: CreateOptions, detach: bool = False,
        keep: bool = False) -> int:
    state = create(store, container_id, opts)
    try:
        lifecycle.start(store, container_id)
    except BaseException:
        with suppress(Exception):
            lifecycle.delete(store, container_id, force=True)
        raise
    if detach:
        return 0
    try:
        code = wait_forwarding(state.pid)
    finally:
        if not keep:
            lifecycle.delete(store, container_id, force=True)
    return code


def exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def wait_forwarding(pid: int) -> int:
    """Wait for `pid` (our child), passing on the signals we get; reap orphans meanwhile."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        with suppress(ProcessLookupError):
            os.kill(pid, signum)

    previous = {sig: signals.handle(sig, forward) for sig in signals.FORWARDED}
    try:
        while True:
            try:
                waited, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 255
            if waited == pid:
                return exit_code(status)
    finally:
        for sig, handler in previous.items():
            signals.handle(sig, handler)
