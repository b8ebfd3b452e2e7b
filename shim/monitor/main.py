"""The monitor process: `shim-monitor TASK_DIR/monitor.json`, or forked by the zygote.

Either way `fork_monitor` forks it, and its parent returns once the monitor has run
the runtime's `create` (the CLI prints `{"pid": N, "monitor_pid": M}` and exits 0, or
prints the runtime's error and exits 1). The monitor lives on in its own session as
a subreaper, so the container's processes are its children whatever happens to
shimd, and it exits after the task is deleted. Configuration (written by shimd):

    {"id", "namespace", "bundle", "runtime", "runtime_root", "socket", "task_dir",
     "stdio": {"stdin", "stdout", "stderr", "terminal"},
     "log": {"path", "max_size", "max_files"} | null}
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

from shim.logs import JsonFileLog
from shim.monitor import cgroup
from shim.monitor.protocol import EXIT_NAME, MonitorError, encode
from shim.monitor.reactor import IN, Reactor
from shim.monitor.stdio import Pump, open_sink, open_source

TYPE_CHECKING = False  # not typing's: importing typing costs each monitor memory
if TYPE_CHECKING:  # not at run time: every import costs each monitor memory
    from typing import Any

DRAIN_SECONDS = 2.0
"""How long an exit waits for the process's output to reach EOF before it is reported."""


class RuntimeFailed(Exception):
    """The runtime command failed; the message is what it printed."""


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _drain(fd: int) -> str:
    """What a failed runtime left in its stderr pipe."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 65536).decode(errors="replace").strip()
    except BlockingIOError:
        return ""


def _atomic_write(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Proc:
    """The init process (exec_id "") or one exec process of the container."""

    def __init__(self, exec_id: str, stdio: dict[str, Any], spec: dict[str, Any] | None) -> None:
        self.exec_id = exec_id
        self.stdio = stdio
        self.spec = spec
        self.terminal = bool(stdio.get("terminal"))
        self.pid = 0
        self.status = "created"
        self.exit_status = 0
        self.exited_at = 0
        self.oom_killed = False
        self.reaped = False
        self.finalized = False
        self.drain_deadline = 0.0
        self.master: int | None = None
        self.pumps: list[Pump] = []
        self.stdin_pump: Pump | None = None
        self.waiters: list[Conn] = []

    def view(self) -> dict[str, Any]:
        return {
            "exec_id": self.exec_id,
            "pid": self.pid,
            "status": self.status,
            "exit_status": self.exit_status,
            "exited_at": self.exited_at,
            "oom_killed": self.oom_killed,
            "terminal": self.terminal,
            "stdio": self.stdio,
        }

    def exit_view(self) -> dict[str, Any]:
        return {
            "exec_id": self.exec_id,
            "pid": self.pid,
            "exit_status": self.exit_status,
            "exited_at": self.exited_at,
            "oom_killed": self.oom_killed,
        }


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


class Monitor:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.id: str = cfg["id"]
        self.task_dir: str = cfg["task_dir"]
        self.reactor = Reactor()
        self.init = Proc("", cfg.get("stdio") or {}, None)
        self.procs: dict[str, Proc] = {"": self.init}
        self.by_pid: dict[int, Proc] = {}
        self.conns: dict[int, Conn] = {}
        self.log: JsonFileLog | None = None
        self.cgroups: dict[str, str] = {}
        self.oom_seen = False
        self.quit = False
        self.listener: socket.socket | None = None
        self._console_n = 0
        log = cfg.get("log")
        if log and log.get("path"):
            self.log = JsonFileLog(log["path"], int(log.get("max_size") or 0),
                                   int(log.get("max_files") or 1))

    # ---- the runtime command line -------------------------------------------------

    def runtime_argv(self, *args: str) -> list[str]:
        return [self.cfg["runtime"], "--root", self.cfg["runtime_root"], *args]

    def run_runtime(self, *args: str) -> str:
        """Run a runtime command to completion; its output is returned, or raised on failure."""
        r, w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid = self._spawn(self.runtime_argv(*args), (null, w, w))
        finally:
            os.close(w)
            os.close(null)
        chunks = []
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(r)
        code = _exit_code(os.waitpid(pid, 0)[1])
        out = b"".join(chunks).decode(errors="replace").strip()
        if code != 0:
            raise RuntimeFailed(f"{os.path.basename(self.cfg['runtime'])} {args[0]} failed "
                                f"(exit {code}): {out or 'no message'}")
        return out

    def _spawn(self, argv: list[str], fds: tuple[int, int, int]) -> int:
        actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(fds)]
        return os.posix_spawnp(
            argv[0], argv, dict(os.environ), file_actions=actions,
            setsigdef=(signal.SIGPIPE, signal.SIGCHLD, signal.SIGTERM, signal.SIGINT),
        )

    # ---- starting processes -------------------------------------------------------

    def _console_socket(self) -> tuple[socket.socket, str]:
        self._console_n += 1
        path = self.cfg["socket"][: -len(".sock")] + f".c{self._console_n}"
        if os.path.exists(path):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(1)
        return sock, path

    def launch(self, proc: Proc, args: list[str]) -> None:
        """Run `RUNTIME create|exec` with the process's stdio, then pump it; sets proc.pid."""
        stdio = proc.stdio
        pid_file = os.path.join(self.task_dir, f"{proc.exec_id or 'init'}.pid")
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        close_after: list[int] = []
        console: tuple[socket.socket, str] | None = None
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        close_after += [err_w, null]
        stdin_src = open_source(stdio["stdin"]) if stdio.get("stdin") else None
        out_r: int | None = None
        in_w: int | None = None
        if proc.terminal:
            console = self._console_socket()
            fds = (null, err_w, err_w)
            extra = ["--console-socket", console[1]]
        else:
            out_r, out_w = os.pipe()
            close_after.append(out_w)
            if stdin_src is not None:
                in_r, in_w = os.pipe()
                close_after.append(in_r)
                fds = (in_r, out_w, err_w)
            else:
                fds = (null, out_w, err_w)
            extra = []
        argv = self.runtime_argv(*args[:1], "--pid-file", pid_file, *extra, *args[1:])
        try:
            pid = self._spawn(argv, fds)
            for fd in close_after:
                os.close(fd)
            close_after = []
            try:
                master = self._receive_master(console[0], pid) if console else None
            except RuntimeFailed as exc:
                raise RuntimeFailed(f"{exc}: {_drain(err_r) or 'no message'}") from None
            code = _exit_code(os.waitpid(pid, 0)[1])
            if code != 0:
                raise RuntimeFailed(
                    f"{os.path.basename(self.cfg['runtime'])} {args[0]} failed "
                    f"(exit {code}): {_drain(err_r) or 'no message'}"
                )
            with open(pid_file) as fh:
                proc.pid = int(fh.read().strip())
        except BaseException:
            for fd in [err_r, *close_after, *(x for x in (out_r, in_w, stdin_src) if x)]:
                os.close(fd)
            raise
        finally:
            if console is not None:
                console[0].close()
                os.unlink(console[1])
        self.by_pid[proc.pid] = proc
        log = self.log if proc is self.init else None
        if proc.terminal:
            assert master is not None
            proc.master = master
            os.close(err_r)
            self._pump(proc, master, stdio.get("stdout"), log, "stdout", own_src=False)
            if stdin_src is not None:
                proc.stdin_pump = Pump(self.reactor, stdin_src, master, own_dst=False)
        else:
            assert out_r is not None
            self._pump(proc, out_r, stdio.get("stdout"), log, "stdout")
            self._pump(proc, err_r, stdio.get("stderr"), log, "stderr")
            if stdin_src is not None and in_w is not None:
                proc.stdin_pump = Pump(self.reactor, stdin_src, in_w)

    def _pump(self, proc: Proc, src: int, sink: str | None, log: JsonFileLog | None,
              stream: str, own_src: bool = True) -> None:
        dst = open_sink(sink) if sink else None
        proc.pumps.append(Pump(self.reactor, src, dst, log=log, stream=stream,
                               own_src=own_src, on_done=lambda: self._maybe_finalize(proc)))

    def _receive_master(self, listener: socket.socket, runtime_pid: int) -> int:
        """Accept the runtime on the console socket and take the pty master it sends."""
        listener.settimeout(0.1)
        deadline = time.monotonic() + 60
        while True:
            try:
                conn, _ = listener.accept()
                break
            except TimeoutError:
                done, _status = os.waitpid(runtime_pid, os.WNOHANG)
                if done:
                    raise RuntimeFailed(
                        f"{os.path.basename(self.cfg['runtime'])} exited with "
                        f"{_exit_code(_status)} without sending a pty master") from None
                if time.monotonic() > deadline:
                    raise RuntimeFailed("no pty master on the console socket in 60s") from None
        with conn:
            conn.settimeout(60)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        if not fds:
            raise RuntimeFailed("the runtime connected to the console socket but sent no fd")
        return fds[0]

    # ---- exits --------------------------------------------------------------------

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.by_pid.get(pid)
            if proc is None or proc.reaped:
                continue
            proc.reaped = True
            proc.exit_status = _exit_code(status)
            proc.exited_at = time.time_ns()
            if proc is self.init:
                proc.oom_killed = self.oom_seen or (
                    bool(self.cgroups) and cgroup.oom_kills(self.cgroups) > 0
                )
            proc.drain_deadline = time.monotonic() + DRAIN_SECONDS
            self._maybe_finalize(proc)

    def _maybe_finalize(self, proc: Proc, force: bool = False) -> None:
        if not proc.reaped or proc.finalized:
            return
        if not force and not all(p.done for p in proc.pumps):
            return
        proc.finalized = True
        proc.status = "stopped"
        if proc.stdin_pump is not None:
            proc.stdin_pump.end_input()
        if proc.master is not None:
            for p in proc.pumps:
                p.end_input()
            self.reactor.unwatch(proc.master)
            os.close(proc.master)
            proc.master = None
        event = {"type": "exit", **proc.exit_view()}
        if proc is self.init:
            _atomic_write(os.path.join(self.task_dir, EXIT_NAME), encode(proc.exit_view()))
        self.broadcast(event)
        reply = {"ok": True, **proc.exit_view()}
        for conn in proc.waiters:
            conn.send(reply)
        proc.waiters.clear()

    def check_deadlines(self) -> float:
        """Finalize exits whose output did not end in time; the next poll timeout."""
        now = time.monotonic()
        timeout = -1.0
        for proc in list(self.procs.values()):
            if proc.reaped and not proc.finalized:
                if now >= proc.drain_deadline:
                    self._maybe_finalize(proc, force=True)
                else:
                    left = proc.drain_deadline - now
                    timeout = left if timeout < 0 else min(timeout, left)
        return timeout

    def broadcast(self, event: dict[str, Any]) -> None:
        for conn in list(self.conns.values()):
            if conn.subscribed:
                conn.send(event)

    def watch_oom(self) -> None:
        mem = cgroup.memory_dir(self.cgroups)
        if mem is None or mem[1] != 1:
            return
        try:
            efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            ofd = os.open(os.path.join(mem[0], "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            with open(os.path.join(mem[0], "cgroup.event_control"), "w") as fh:
                fh.write(f"{efd} {ofd}")
        except OSError:
            return

        def fired() -> None:
            try:
                os.eventfd_read(efd)
            except BlockingIOError:
                return
            if not os.path.exists(mem[0]):  # the cgroup was removed, not an OOM
                self.reactor.unwatch(efd)
                return
            self.oom_seen = True
            self.broadcast({"type": "oom"})

        self.reactor.watch(efd, IN, fired)

    # ---- requests -----------------------------------------------------------------

    def proc_for(self, req: dict[str, Any]) -> Proc:
        exec_id = str(req.get("exec_id") or "")
        proc = self.procs.get(exec_id)
        if proc is None:
            raise MonitorError("not_found",
                               f"exec process {exec_id!r} not found in task {self.id!r}")
        return proc

    def handle(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any] | None:
        op = req.get("op")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise MonitorError("invalid_argument", f"unknown monitor operation {op!r}")
        result: dict[str, Any] | None = handler(conn, req)
        return result

    def op_state(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        return {"init": self.init.view(),
                "execs": {k: p.view() for k, p in self.procs.items() if k},
                "monitor_pid": os.getpid(), "cgroups": self.cgroups}

    def op_start(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        proc = self.proc_for(req)
        if proc.status != "created" or proc.reaped:
            raise MonitorError("failed_precondition",
                               f"{self._name(proc)} is {proc.status}, not created: "
                               "it can start once")
        if proc is self.init:
            self.run_runtime("start", self.id)
        else:
            if self.init.status != "running" or self.init.reaped:
                raise MonitorError("failed_precondition",
                                   f"task {self.id!r} is not running: start it before its execs")
            spec_path = os.path.join(self.task_dir, f"exec-{proc.exec_id}.json")
            with open(spec_path, "w") as fh:
                json.dump(proc.spec, fh)
            args = ["exec", "--detach", "--process", spec_path]
            if proc.terminal:
                args.append("--tty")
            self.launch(proc, [*args, self.id])
        proc.status = "running"
        return {"pid": proc.pid}

    def op_kill(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        proc = self.proc_for(req)
        sig = int(req.get("signal") or signal.SIGTERM)
        if proc.reaped:
            raise MonitorError("not_found", f"{self._name(proc)} has already exited")
        if proc is self.init:
            args = ["kill", *(["--all"] if req.get("all") else []), self.id, str(sig)]
            self.run_runtime(*args)
        elif proc.pid:
            os.kill(proc.pid, sig)
        else:
            raise MonitorError("failed_precondition", f"{self._name(proc)} was never started")
        return {}

    def op_exec(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        exec_id = str(req.get("exec_id") or "")
        if not exec_id:
            raise MonitorError("invalid_argument", "an exec process needs a non-empty exec_id")
        if exec_id in self.procs:
            raise MonitorError("already_exists",
                               f"exec id {exec_id!r} is in use in task {self.id!r}")
        if self.init.reaped:
            raise MonitorError("failed_precondition", f"task {self.id!r} has exited")
        self.procs[exec_id] = Proc(exec_id, req.get("stdio") or {}, req.get("process") or {})
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
        if proc is not self.init:
            if proc.status == "running" and not proc.finalized:
                raise MonitorError("failed_precondition",
                                   f"{self._name(proc)} is running: kill it before deleting it")
            del self.procs[proc.exec_id]
            return proc.exit_view()
        if self.init.status == "running" and not self.init.finalized:
            raise MonitorError("failed_precondition",
                               f"task {self.id!r} is running: kill it first or delete with force")
        if self.init.status == "created" and not self.init.reaped:
            self.run_runtime("delete", "--force", self.id)
            self.init.exited_at = time.time_ns()
            self.init.exit_status = 137
        else:
            self.run_runtime("delete", self.id)
        self.quit = True
        return self.init.exit_view()

    def op_subscribe(self, conn: Conn, req: dict[str, Any]) -> dict[str, Any]:
        conn.subscribed = True
        return {}

    def _name(self, proc: Proc) -> str:
        return f"exec process {proc.exec_id!r} of task {self.id!r}" if proc.exec_id else \
            f"task {self.id!r}"

    # ---- the socket ---------------------------------------------------------------

    def listen(self) -> None:
        path = self.cfg["socket"]
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
        for proc in self.procs.values():
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
            self.reap()

        self.reactor.watch(wakeup_r, IN, on_signal)
        self.reap()
        while not self.quit:
            try:
                self.reactor.poll(self.check_deadlines())
                self.reap()
            except Exception as exc:  # a bug or a full disk must not lose the container
                sys.stderr.write(f"monitor {self.id}: {type(exc).__name__}: {exc}\n")
                sys.stderr.flush()
        for conn in list(self.conns.values()):
            self._drop(conn)
        if self.log is not None:
            self.log.close()
        if self.listener is not None:
            self.listener.close()
            if os.path.exists(self.cfg["socket"]):
                os.unlink(self.cfg["socket"])


def fork_monitor(cfg: dict[str, Any], close_fds: tuple[int, ...] = ()) -> str:
    """Fork the monitor of `cfg` and return its report once the runtime's create is
    done: "ok {json}" or "error MESSAGE". The monitor lives on in its own session; a
    failed one is reaped before this returns. `close_fds` are closed in the monitor."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 1
        try:
            for fd in close_fds:
                os.close(fd)
            code = _monitor(cfg, w)
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    report = b"".join(chunks).decode(errors="replace")
    if not report.startswith("ok "):
        os.waitpid(pid, 0)  # gone before shimd reports the failure
        return report if report.startswith("error ") else "error monitor died during create"
    return report


def _detach(task_dir: str) -> None:
    """A session of its own, stdio on /dev/null and TASK_DIR/monitor.log, and the task
    directory as working directory (which names the task in /proc/PID/cwd)."""
    os.setsid()
    os.chdir(task_dir)
    log = os.open(os.path.join(task_dir, "monitor.log"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for fd in {null, log} - {0, 1, 2}:
        os.close(fd)


def _monitor(cfg: dict[str, Any], report: int) -> int:
    """The monitor process: create the container, report, serve until deleted."""
    try:
        _detach(cfg["task_dir"])
        from lowrun.syscalls import set_child_subreaper

        set_child_subreaper()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # only a Delete ends the monitor
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        monitor = Monitor(cfg)
        monitor.launch(monitor.init, ["create", "--bundle", cfg["bundle"], cfg["id"]])
        try:
            monitor.cgroups = cgroup.paths(monitor.init.pid)
        except OSError:
            monitor.cgroups = {}
        monitor.watch_oom()
        monitor.listen()
    except BaseException as exc:
        os.write(report, f"error {exc}".encode())
        os.close(report)
        return 1
    os.write(report, b"ok " + json.dumps({"pid": monitor.init.pid,
                                          "monitor_pid": os.getpid()}).encode())
    os.close(report)
    monitor.serve(wake_r)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`shim-monitor TASK_DIR/monitor.json` forks one monitor and prints its pids (or
    its error, exit 1); `shim-monitor --zygote SOCKET` serves forks (zygote.py)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--zygote":
        from shim.monitor.zygote import serve

        return serve(args[1])
    if len(args) != 1:
        sys.stderr.write("usage: shim-monitor TASK_DIR/monitor.json | --zygote SOCKET\n")
        return 2
    with open(args[0]) as fh:
        cfg = json.load(fh)
    report = fork_monitor(cfg)
    if report.startswith("ok "):
        sys.stdout.write(report[3:] + "\n")
        return 0
    sys.stderr.write(report.removeprefix("error ") + "\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
