"""The monitor zygote: a pre-started, single-threaded parent that forks monitors.

A monitor started by exec pays for its own interpreter and imports (about 5 MB of
private memory); one forked from this process shares those pages copy-on-write
and keeps private only what it writes. shimd starts the zygote with a pipe on its
stdin and talks to it on a unix socket: a request is `{"config": PATH}` (the
monitor.json), the reply `{"report": "ok {...}" | "error MESSAGE"}`. The zygote
forks an intermediate per request, which forks the monitor (`fork_monitor`),
relays its report and exits, so the zygote never waits on a runtime. It ends when
its stdin reaches EOF, that is when shimd exits or dies.

Stdlib only, and no threads: fork must stay safe.
"""

from __future__ import annotations

import gc
import json
import os
import select
import socket

from shim.monitor.main import fork_monitor
from shim.monitor.protocol import encode


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _serve_one(listener: socket.socket, conn: socket.socket) -> None:
    """In the intermediate process: read the request, fork the monitor, reply."""
    listener.close()
    conn.settimeout(30)
    buf = b""
    while b"\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            return
        buf += chunk
    try:
        with open(json.loads(buf.split(b"\n", 1)[0])["config"]) as fh:
            cfg = json.load(fh)
        report = fork_monitor(cfg, close_fds=(conn.fileno(),))
    except Exception as exc:  # the reply must say what went wrong
        report = f"error zygote: {type(exc).__name__}: {exc}"
    conn.sendall(encode({"report": report}))


def serve(path: str) -> int:
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(128)
    import lowrun.syscalls  # noqa: F401 - preloaded for the monitors, shared
    gc.freeze()  # keep the collector from writing to the pages monitors share
    try:
        while True:
            ready, _, _ = select.select([listener.fileno(), 0], [], [], 1.0)
            _reap()
            if 0 in ready and not os.read(0, 4096):
                return 0  # shimd is gone
            if listener.fileno() not in ready:
                continue
            conn, _ = listener.accept()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    _serve_one(listener, conn)
                    code = 0
                finally:
                    os._exit(code)
            conn.close()
    finally:
        listener.close()
        if os.path.exists(path):
            os.unlink(path)
