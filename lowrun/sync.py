"""The channel between lowrun and the processes it forks: JSON messages on a socketpair.

A child that fails sends its error as a message, so that the parent raises the same
kind of error with the same message (and JSON path) as if it had failed itself.
"""

from __future__ import annotations

import _socket
import select

from lowrun import errors, jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_MAX = 65536


class Channel:
    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock

    @staticmethod
    def pair() -> tuple[Channel, Channel]:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        return Channel(a), Channel(b)

    def send(self, kind: str, **data: Any) -> None:
        try:
            self.sock.send(jsonio.dumps({"type": kind, **data}).encode())
        except (BrokenPipeError, ConnectionResetError):
            # The other side is gone; if it said why before it went, raise that.
            self.recv(kind, timeout=0)
            raise errors.LowrunError(f"the container's init exited before {kind}") from None

    def send_error(self, exc: BaseException) -> None:
        msg: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, errors.ConfigError):
            msg.update(where=exc.where, problem=exc.problem)
        self.send("error", **msg)

    def recv(self, expect: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        if timeout is not None:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready and timeout == 0:
                raise errors.LowrunError(f"the container's init exited before {expect}")
            if not ready:
                what = expect or "reply"
                raise errors.LowrunError(f"timed out waiting for the container's {what}")
        raw = self.sock.recv(_MAX)
        if not raw:
            raise errors.LowrunError(
                f"the container's init exited before {expect or 'replying'} (see its stderr)"
            )
        msg: dict[str, Any] = jsonio.loads(raw)
        if msg["type"] == "error":
            raise _rebuild(msg)
        if expect is not None and msg["type"] != expect:
            raise errors.LowrunError(f"protocol error: expected {expect}, got {msg['type']}")
        return msg

    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()


def _rebuild(msg: dict[str, Any]) -> errors.LowrunError:
    if msg.get("error") == "ConfigError":
        return errors.ConfigError(msg["where"], msg["problem"])
    cls = getattr(errors, msg.get("error", ""), None)
    if isinstance(cls, type) and issubclass(cls, errors.LowrunError) and cls not in (
        errors.ContainerNotFound,
        errors.ContainerExists,
        errors.SyscallError,
        errors.ConfigError,
    ):
        return cls(msg["message"])
    return errors.LowrunError(msg["message"])
