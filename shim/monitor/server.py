"""The monitor's socket: shimd's requests, one JSON object a line, served on a Monitor.

`Server` accepts connections on the task's socket, dispatches each request to its
`op_NAME` (state, start, kill, exec, resize, close_io, wait, delete, subscribe), turns
errors into `{"ok": false, "kind", "error"}` replies, and sends the monitor's exit and
OOM events to subscribed connections. `serve` is the monitor's loop: it polls the
reactor and reaps until a Delete. The processes are `shim.monitor.monitor.Monitor`'s.
Stdlib only, like every module the monitor imports.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import sys
import termios
import time

from shim.monitor.monitor import Monitor, Proc, RuntimeFailed
from shim.monitor.protocol import MonitorError, encode
from shim.monitor.reactor import IN

TYPE_CHECKING = False  # not typing's: importing typing costs each monitor memory
if TYPE_CHECKING:  # not at run time: every import costs each monitor memory
    from typing import Any


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.subscribed = False
        self.closed = False

    def send(self, obj: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self.sock.sendall(encode(obj))
        except OSError:
            self.closed = True


class Server:
    """Serves one monitor's socket; a Delete of the init ends `serve`."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.reactor = monitor.reactor
        self.conns: dict[int, Conn] = {}
        self.listener: socket.socket | None = None
        self.quit = False
        monitor.on_event = self.broadcast

    def broadcast(self, event: dict[str, Any]) -> None:
        for conn in list(self.conns.values()):
            if conn.subscribed:
                conn.send(event)

    # ---- requests -----------------------------------------------------------------

    def proc_for(self, req: dict[str, Any]) -> Proc:
        exec_id = str(req.get("exec_id") or "")
        proc = self.monitor.procs.get(exec_id)
        if proc is None:
            raise MonitorError("not_found",
                               f"exec process {exec_id!r} not found in task {self.monitor.id!r}")
        return proc

    def handle(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any] | None:
        op = req.get("op")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise MonitorError("invalid_argument", f"unknown monitor operation {op!r}")
        result: dict[str, Any] | None = handler(conn, req)
        return result

    def op_state(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        return {"init": self.monitor.init.view(),
                "execs": {k: p.view() for k, p in self.monitor.procs.items() if k},
                "monitor_pid": os.getpid(), "cgroups": self.monitor.cgroups}

    def op_start(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        proc = self.proc_for(req)
        if proc.status != "created" or proc.reaped:
            raise MonitorError("failed_precondition",
                               f"{self._name(proc)} is {proc.status}, not created: "
                               "it can start once")
        if proc is self.monitor.init:
            self.monitor.run_runtime("start", self.monitor.id)
        else:
            if self.monitor.init.status != "running" or self.monitor.init.reaped:
                raise MonitorError("failed_precondition",
                                   f"task {self.monitor.id!r} is not running: "
                                   "start it before its execs")
            spec_path = os.path.join(self.monitor.task_dir, f"exec-{proc.exec_id}.json")
            with open(spec_path, "w") as fh:
                json.dump(proc.spec, fh)
            args = ["exec", "--detach", "--process", spec_path]
            if proc.terminal:
                args.append("--tty")
            self.monitor.launch(proc, [*args, self.monitor.id])
        proc.status = "running"
        return {"pid": proc.pid}

    def op_kill(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        proc = self.proc_for(req)
        sig = int(req.get("signal") or signal.SIGTERM)
        if proc.reaped:
            raise MonitorError("not_found", f"{self._name(proc)} has already exited")
        if proc is self.monitor.init:
            args = ["kill", *(["--all"] if req.get("all") else []), self.monitor.id, str(sig)]
            self.monitor.run_runtime(*args)
        elif proc.pid:
            os.kill(proc.pid, sig)
        else:
            raise MonitorError("failed_precondition", f"{self._name(proc)} was never started")
        return {}

    def op_exec(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        exec_id = str(req.get("exec_id") or "")
        if not exec_id:
            raise MonitorError("invalid_argument", "an exec process needs a non-empty exec_id")
        if exec_id in self.monitor.procs:
            raise MonitorError("already_exists",
                               f"exec id {exec_id!r} is in use in task {self.monitor.id!r}")
        if self.monitor.init.reaped:
            raise MonitorError("failed_precondition", f"task {self.monitor.id!r} has exited")
        self.monitor.procs[exec_id] = Proc(exec_id, req.get("stdio") or {},
                                           req.get("process") or {})
        return {}

    def op_resize(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        proc = self.proc_for(req)
        if proc.master is None:
            raise MonitorError("failed_precondition", f"{self._name(proc)} has no terminal")
        size = struct.pack("HHHH", int(req.get("height", 0)), int(req.get("width", 0)), 0, 0)
        fcntl.ioctl(proc.master, termios.TIOCSWINSZ, size)
        return {}

    def op_close_io(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        proc = self.proc_for(req)
        if proc.stdin_pump is not None:
            proc.stdin_pump.end_input(b"\x04" if proc.terminal else b"")
        return {}

    def op_wait(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any] | None:
        proc = self.proc_for(req)
        if proc.finalized:
            return proc.exit_view()
        proc.waiters.append(conn)
        return None

    def op_delete(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        proc = self.proc_for(req)
        if proc is not self.monitor.init:
            if proc.status == "running" and not proc.finalized:
                raise MonitorError("failed_precondition",
                                   f"{self._name(proc)} is running: kill it before deleting it")
            del self.monitor.procs[proc.exec_id]
            return proc.exit_view()
        if self.monitor.init.status == "running" and not self.monitor.init.finalized:
            raise MonitorError("failed_precondition",
                               f"task {self.monitor.id!r} is running: "
                               "kill it first or delete with force")
        if self.monitor.init.status == "created" and not self.monitor.init.reaped:
            self.monitor.run_runtime("delete", "--force", self.monitor.id)
            self.monitor.init.exited_at = time.time_ns()
            self.monitor.init.exit_status = 137
        else:
            self.monitor.run_runtime("delete", self.monitor.id)
        self.quit = True
        return self.monitor.init.exit_view()

    def op_subscribe(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        conn.subscribed = True
        return {}

    def _name(self, proc: Proc) -> str:
        return f"exec process {proc.exec_id!r} of task {self.monitor.id!r}" if proc.exec_id else \
            f"task {self.monitor.id!r}"

    # ---- the socket ---------------------------------------------------------------

    def listen(self) -> None:
        path = self.monitor.cfg["socket"]
        if os.path.exists(path):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
        self.listener = sock
        self.reactor.watch(sock.fileno(), IN, self._accept)

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.settimeout(5)
        conn = Conn(sock)
        self.conns[sock.fileno()] = conn
        self.reactor.watch(sock.fileno(), IN, lambda: self._readable(conn))

    def _readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        conn.buf += data
        while b"\n" in conn.buf and not conn.closed:
            line, conn.buf = conn.buf.split(b"\n", 1)
            try:
                req = json.loads(line)
                reply = self.handle(conn, req)
            except MonitorError as exc:
                conn.send({"ok": False, "kind": exc.kind, "error": str(exc)})
                continue
            except RuntimeFailed as exc:
                conn.send({"ok": False, "kind": "failed_precondition", "error": str(exc)})
                continue
            except Exception as exc:  # a bug must not kill the container's monitor
                conn.send({"ok": False, "kind": "internal",
                           "error": f"{type(exc).__name__}: {exc}"})
                continue
            if reply is not None:
                conn.send({"ok": True, **reply})
        if conn.closed:
            self._drop(conn)

    def _drop(self, conn: Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            self.reactor.unwatch(fd)
            self.conns.pop(fd, None)
        for proc in self.monitor.procs.values():
            if conn in proc.waiters:
                proc.waiters.remove(conn)
        conn.sock.close()
        conn.closed = True

    # ---- the loop -----------------------------------------------------------------

    def serve(self, wakeup_r: int) -> None:
        def on_signal() -> None:
            try:
                while os.read(wakeup_r, 512):
                    pass
            except BlockingIOError:
                pass
            self.monitor.reap()

        self.reactor.watch(wakeup_r, IN, on_signal)
        self.monitor.reap()
        while not self.quit:
            try:
                self.reactor.poll(self.monitor.check_deadlines())
                self.monitor.reap()
            except Exception as exc:  # a bug or a full disk must not lose the container
                sys.stderr.write(f"monitor {self.monitor.id}: {type(exc).__name__}: {exc}\n")
                sys.stderr.flush()
        for conn in list(self.conns.values()):
            self._drop(conn)
        if self.monitor.log is not None:
            self.monitor.log.close()
        if self.listener is not None:
            self.listener.close()
            if os.path.exists(self.monitor.cfg["socket"]):
                os.unlink(self.monitor.cfg["socket"])
