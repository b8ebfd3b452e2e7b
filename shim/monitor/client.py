"""shimd's side of the monitor: start one, and talk to it over its socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shim.monitor.protocol import CONFIG_NAME, LineReader, MonitorError, encode

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0


def monitor_command(config_path: str) -> list[str]:
    """The lean launcher next to the interpreter if setup wrote it, else the same by -c."""
    launcher = Path(sys.executable).parent / "shim-monitor"
    if launcher.exists():
        return [str(launcher), config_path]
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from shim.monitor.main import main; sys.exit(main())")
    return [sys.executable, "-S", "-E", "-c", code, config_path]


def start_monitor(task_dir: str, config: dict[str, Any]) -> dict[str, Any]:
    """Write the monitor's configuration and run it; returns {"pid", "monitor_pid"} once
    the runtime's create succeeded, raises MonitorError with the runtime's message."""
    path = os.path.join(task_dir, CONFIG_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(config, fh)
    os.replace(tmp, path)
    try:
        proc = subprocess.run(
            monitor_command(path), capture_output=True, text=True, timeout=START_TIMEOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise MonitorError("internal", f"the monitor did not report within {START_TIMEOUT}s") \
            from exc
    if proc.returncode != 0:
        raise MonitorError("failed_precondition", proc.stderr.strip() or
                           f"the monitor exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


class MonitorConnection:
    """One request/reply connection to a monitor (a new one per blocking call)."""

    def __init__(self, path: str, timeout: float | None = 30.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as exc:
            self.sock.close()
            raise MonitorError("unavailable", f"monitor socket {path} does not answer: {exc}") \
                from exc
        self.reader = LineReader(self.sock)

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        self.sock.sendall(encode({"op": op, **args}))
        reply = self.reader.read()
        if reply is None:
            raise MonitorError("unavailable", f"monitor at {self.path} closed the connection "
                               f"during {op!r}")
        if not reply.pop("ok", False):
            raise MonitorError(str(reply.get("kind", "internal")), str(reply.get("error")))
        return reply

    def events(self) -> Iterator[dict[str, Any]]:
        """Subscribe; yields events until the monitor closes the connection."""
        self.sock.settimeout(None)
        self.call("subscribe")
        while True:
            event = self.reader.read()
            if event is None:
                return
            yield event

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MonitorConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def call(path: str, op: str, timeout: float | None = 60.0, **args: Any) -> dict[str, Any]:
    with MonitorConnection(path, timeout) as conn:
        return conn.call(op, **args)
