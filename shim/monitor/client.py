"""shimd's side of the monitor: start one, and talk to it over its socket."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shim.monitor.protocol import CONFIG_NAME, LineReader, MonitorError, encode

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)
START_TIMEOUT = 120.0


def monitor_command(*args: str) -> list[str]:
    """The lean launcher next to the interpreter if setup wrote it, else the same by -c."""
    launcher = Path(sys.executable).parent / "shim-monitor"
    if launcher.exists():
        return [str(launcher), *args]
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from shim.monitor.main import main; sys.exit(main())")
    return [sys.executable, "-S", "-E", "-c", code, *args]


def _write_config(task_dir: str, config: dict[str, Any]) -> str:
    path = os.path.join(task_dir, CONFIG_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(config, fh)
    os.replace(tmp, path)
    return path


def _parse_report(report: str) -> dict[str, Any]:
    if not report.startswith("ok "):
        raise MonitorError("failed_precondition",
                           report.removeprefix("error ").strip() or "the monitor died")
    result: dict[str, Any] = json.loads(report[3:])
    return result


def start_monitor(task_dir: str, config: dict[str, Any]) -> dict[str, Any]:
    """Write the monitor's configuration and exec a monitor; returns {"pid",
    "monitor_pid"} once the runtime's create succeeded, raises MonitorError with the
    runtime's message."""
    path = _write_config(task_dir, config)
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
    return _parse_report("ok " + proc.stdout.strip().splitlines()[-1])


class MonitorLauncher:
    """Starts monitors: forked by the zygote (shared memory) when it runs, else by exec.

    The zygote is shimd's child with a pipe on its stdin; it exits when shimd does.
    A zygote that stopped answering is restarted once per failed start; if that
    fails too, monitors are exec'd, which works the same but costs more memory.
    """

    def __init__(self, state_dir: str, use_zygote: bool = True) -> None:
        self.socket = os.path.join(state_dir, "zygote.sock")
        self.use_zygote = use_zygote
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        if use_zygote:
            self._start_zygote()

    def _start_zygote(self) -> None:
        self.close()
        with open(os.devnull, "wb") as null:
            self.proc = subprocess.Popen(
                monitor_command("--zygote", self.socket), stdin=subprocess.PIPE,
                stdout=null, stderr=null, start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log.warning("the monitor zygote did not start; monitors will be exec'd")
                self.close()
                return
            time.sleep(0.01)

    def start(self, task_dir: str, config: dict[str, Any]) -> dict[str, Any]:
        path = _write_config(task_dir, config)
        if self.use_zygote:
            for attempt in range(2):
                try:
                    return _parse_report(self._ask_zygote(path))
                except (OSError, ValueError) as exc:
                    log.warning("monitor zygote failed (%s); %s", exc,
                                "restarting it" if attempt == 0 else "exec'ing the monitor")
                    with self._lock:
                        self._start_zygote()
        return start_monitor(task_dir, config)

    def _ask_zygote(self, config_path: str) -> str:
        if self.proc is None or self.proc.poll() is not None:
            raise OSError("the zygote is not running")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(START_TIMEOUT)
            sock.connect(self.socket)
            sock.sendall(encode({"config": config_path}))
            reply = LineReader(sock).read()
        if reply is None:
            raise OSError("the zygote closed the connection without a report")
        return str(reply["report"])

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # EOF: the zygote exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
        """Subscribe now; the iterator yields events until the monitor closes the
        connection."""
        self.call("subscribe")
        self.sock.settimeout(None)

        def follow() -> Iterator[dict[str, Any]]:
            while True:
                event = self.reader.read()
                if event is None:
                    return
                yield event

        return follow()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MonitorConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def call(path: str, op: str, timeout: float | None = 60.0, **args: Any) -> dict[str, Any]:
    with MonitorConnection(path, timeout) as conn:
        return conn.call(op, **args)
