"""The monitor's wire protocol: one JSON object per line over a unix stream socket.

A request is `{"op": NAME, ...}`; the reply is `{"ok": true, ...}` or
`{"ok": false, "kind": KIND, "error": MESSAGE}` where KIND names an error kind of
`shim.errors` ("not_found", "failed_precondition", "invalid_argument", "internal").
`wait` replies when the process has exited; `subscribe` turns the connection into a
stream of event objects (`{"type": "exit" | "oom" | ...}`), one per line.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # not typing's: importing typing costs each monitor memory
if TYPE_CHECKING:
    import socket
    from typing import Any

CONFIG_NAME = "monitor.json"
EXIT_NAME = "exit.json"
MAX_LINE = 1 << 20


class MonitorError(Exception):
    """An error reply of the monitor, or a failure to reach it."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def socket_path(state_dir: str, namespace: str, container_id: str) -> str:
    """A short socket path (sun_path holds 108 bytes) unique per namespace and id."""
    import hashlib  # shimd's side only

    digest = hashlib.sha256(f"{namespace}/{container_id}".encode()).hexdigest()[:20]
    return os.path.join(state_dir, "s", digest + ".sock")


def encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


class LineReader:
    """Reads newline-terminated JSON objects from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def read(self) -> dict[str, Any] | None:
        """The next object, or None at end of stream."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
            if len(self.buf) > MAX_LINE:
                raise MonitorError("internal", "monitor sent a line longer than 1 MiB")
        line, self.buf = self.buf.split(b"\n", 1)
        obj: dict[str, Any] = json.loads(line)
        return obj
