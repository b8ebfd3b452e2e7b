"""Copying a process's stdio between the container and the places the caller chose.

A Pump moves bytes from a source fd (a pipe or pty master the container writes, or a
stdin fifo) to an optional destination fd (a fifo or file, or the container's stdin)
and an optional json-file log. When the destination is full it stops reading the
source, so a slow reader slows the container down instead of growing the monitor.
"""

from __future__ import annotations

import errno
import os
import stat

from shim.logs import JsonFileLog
from shim.monitor.reactor import IN, OUT, Reactor

TYPE_CHECKING = False  # not typing's: importing typing costs each monitor memory
if TYPE_CHECKING:
    from collections.abc import Callable


def open_sink(path: str) -> int:
    """Open where output goes: a fifo read-write and nonblocking (never blocks on open
    whether or not a reader is there), any other path appended to."""
    try:
        is_fifo = stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        is_fifo = False
    if is_fifo:
        return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


def open_source(path: str) -> int:
    """Open a stdin fifo read-write so that it never reports EOF when a writer leaves;
    the caller ends stdin explicitly (CloseIO)."""
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


class Pump:
    def __init__(
        self,
        reactor: Reactor,
        src: int,
        dst: int | None,
        *,
        log: JsonFileLog | None = None,
        stream: str = "stdout",
        own_src: bool = True,
        own_dst: bool = True,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.reactor = reactor
        self.src = src
        self.dst = dst
        self.log = log
        self.stream = stream
        self.own_src = own_src
        self.own_dst = own_dst
        self.on_done = on_done
        self.pending = bytearray()
        self.reading = True
        self.done = False
        os.set_blocking(src, False)
        if dst is not None:
            os.set_blocking(dst, False)
        reactor.watch(src, IN, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.src, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # a pty master reads EIO once every slave is closed
                raise
            data = b""
        if not data:
            self.end_input()
            return
        if self.log is not None:
            try:
                self.log.write(self.stream, data)
            except OSError as exc:  # e.g. ENOSPC: keep the container going, without log
                os.write(2, f"log {self.log.path}: {exc}; logging stopped\n".encode())
                self.log = None
        if self.dst is not None:
            self.pending += data
            self._flush()

    def _flush(self) -> None:
        assert self.dst is not None
        while self.pending:
            try:
                n = os.write(self.dst, self.pending)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.EIO, errno.EBADF):
                    raise
                self.pending.clear()  # nobody will ever read it
                break
            del self.pending[:n]
        if self.pending:
            self.reactor.unwatch(self.src, IN)
            self.reactor.watch(self.dst, OUT, self._flush)
            return
        self.reactor.unwatch(self.dst, OUT)
        if self.reading:
            self.reactor.watch(self.src, IN, self._on_readable)
        else:
            self._finish()

    def end_input(self, trailer: bytes = b"") -> None:
        """Stop reading the source (its EOF, or CloseIO); finish once `pending` is written."""
        if not self.reading:
            return
        self.reading = False
        self.reactor.unwatch(self.src, IN)
        if self.own_src:
            os.close(self.src)
        if self.log is not None:
            self.log.flush(self.stream)
        if self.dst is not None and (self.pending or trailer):
            self.pending += trailer
            self._flush()
        else:
            self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.dst is not None:
            self.reactor.unwatch(self.dst, OUT)
            if self.own_dst:
                os.close(self.dst)
        if self.on_done is not None:
            self.on_done()
