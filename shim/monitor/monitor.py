"""The process side of a task's monitor: the runtime's commands, stdio, exits.

`Monitor` runs the init and exec processes through the runtime's command line (create,
exec, start, kill, delete), pumps their stdio to the sinks and the log, reaps them as
their subreaper, records the init's exit in TASK_DIR/exit.json, and reports exits and
OOM kills through `on_event` and to each process's waiters. The socket protocol that
drives it is `shim.monitor.server`; `shim.monitor.main` starts both. Stdlib only: every
import costs each monitor memory.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from shim.logs import JsonFileLog
from shim.monitor import cgroup
from shim.monitor.protocol import EXIT_NAME, encode
from shim.monitor.reactor import IN, Reactor
from shim.monitor.stdio import Pump, open_sink, open_source

TYPE_CHECKING = False  # not typing's: importing typing costs each monitor memory
if TYPE_CHECKING:  # not at run time: every import costs each monitor memory
    from collections.abc import Callable
    from typing import Any

    from shim.monitor.server import Conn

DRAIN_SECONDS = 2.0
"""How long an exit waits for the process's output to reach EOF before it is reported."""


class RuntimeFailed(Exception):
    """The runtime command failed; the message is what it printed."""


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def read_all(fd: int) -> bytes:
    """Read a pipe to its end, then close it."""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


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


def _unheard(event: dict[str, Any]) -> None:
    """Events before a server listens have nobody to go to."""


class Monitor:
    """The processes of one task: launched through the runtime, pumped, reaped."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.id: str = cfg["id"]
        self.task_dir: str = cfg["task_dir"]
        self.reactor = Reactor()
        self.init = Proc("", cfg.get("stdio") or {}, None)
        self.procs: dict[str, Proc] = {"": self.init}
        self.by_pid: dict[int, Proc] = {}
        self.log: JsonFileLog | None = None
        self.cgroups: dict[str, str] = {}
        self.oom_seen = False
        self._console_n = 0
        self.on_event: Callable[[dict[str, Any]], None] = _unheard
        """Where exit and OOM events go: the server sets it to its subscribers."""
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
        out = read_all(r).decode(errors="replace").strip()
        code = _exit_code(os.waitpid(pid, 0)[1])
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
        self.on_event(event)
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
            self.on_event({"type": "oom"})

        self.reactor.watch(efd, IN, fired)
