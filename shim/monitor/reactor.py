"""A minimal epoll loop with one callback per (fd, direction); stdlib only."""

from __future__ import annotations

import errno
import os
import select

TYPE_CHECKING = False  # not typing's: importing typing costs each monitor memory
if TYPE_CHECKING:
    from collections.abc import Callable

IN = select.EPOLLIN
OUT = select.EPOLLOUT
_ERR = select.EPOLLERR | select.EPOLLHUP


class Reactor:
    def __init__(self) -> None:
        self._ep = select.epoll()
        self._handlers: dict[int, dict[int, Callable[[], None]]] = {}
        self._registered: set[int] = set()

    def watch(self, fd: int, direction: int, callback: Callable[[], None]) -> None:
        self._handlers.setdefault(fd, {})[direction] = callback
        self._update(fd)

    def unwatch(self, fd: int, direction: int | None = None) -> None:
        handlers = self._handlers.get(fd)
        if handlers is None:
            return
        if direction is None:
            handlers.clear()
        else:
            handlers.pop(direction, None)
        self._update(fd)

    def _update(self, fd: int) -> None:
        handlers = self._handlers.get(fd, {})
        mask = 0
        for direction in handlers:
            mask |= direction
        if not mask:
            self._handlers.pop(fd, None)
            if fd in self._registered:
                self._registered.discard(fd)
                try:
                    self._ep.unregister(fd)
                except OSError as exc:
                    if exc.errno not in (errno.EBADF, errno.ENOENT):
                        raise
            return
        if fd in self._registered:
            self._ep.modify(fd, mask)
        else:
            self._ep.register(fd, mask)
            self._registered.add(fd)

    def poll(self, timeout: float) -> None:
        """Wait up to `timeout` seconds (-1: forever) and run the callbacks of ready fds."""
        for fd, events in self._ep.poll(timeout):
            for direction in (IN, OUT):
                if not events & (direction | _ERR):
                    continue
                callback = self._handlers.get(fd, {}).get(direction)
                if callback is not None:
                    callback()

    def close(self) -> None:
        self._ep.close()


def set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)
