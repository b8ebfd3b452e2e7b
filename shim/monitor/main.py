"""The monitor process: `shim-monitor TASK_DIR/monitor.json`, or forked by the zygote.

Either way `fork_monitor` forks it, and its parent returns once the monitor has run
the runtime's `create` (the CLI prints `{"pid": N, "monitor_pid": M}` and exits 0, or
prints the runtime's error and exits 1). The monitor lives on in its own session as
a subreaper, so the container's processes are its children whatever happens to
shimd, and it exits after the task is deleted. Configuration (written by shimd):

    {"id", "namespace", "bundle", "runtime", "runtime_root", "socket", "task_dir",
     "stdio": {"stdin", "stdout", "stderr", "terminal"},
     "log": {"path", "max_size", "max_files"} | null}

This module starts the monitor; `monitor.py` runs and reaps the task's processes and
`server.py` serves shimd's requests on the task's socket.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from shim.monitor import cgroup
from shim.monitor.monitor import Monitor, read_all
from shim.monitor.server import Server

TYPE_CHECKING = False  # not typing's: importing typing costs each monitor memory
if TYPE_CHECKING:  # not at run time: every import costs each monitor memory
    from typing import Any


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
    report = read_all(r).decode(errors="replace")
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
        server = Server(monitor)
        monitor.launch(monitor.init, ["create", "--bundle", cfg["bundle"], cfg["id"]])
        try:
            monitor.cgroups = cgroup.paths(monitor.init.pid)
        except OSError:
            monitor.cgroups = {}
        monitor.watch_oom()
        server.listen()
    except BaseException as exc:
        os.write(report, f"error {exc}".encode())
        os.close(report)
        return 1
    os.write(report, b"ok " + json.dumps({"pid": monitor.init.pid,
                                          "monitor_pid": os.getpid()}).encode())
    os.close(report)
    server.serve(wake_r)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`shim-monitor TASK_DIR/monitor.json` forks one monitor and prints its pids (or
    its error, exit 1); `shim-monitor --zygote SOCKET` serves forks (zygote.py)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--zygote":
        from shim.monitor.zygote import serve

        return serve(args[1])
    usage = "usage: shim-monitor TASK_DIR/monitor.json | --zygote SOCKET\n"
    if args in (["--help"], ["-h"]):
        sys.stdout.write(usage)
        return 0
    if len(args) != 1:
        sys.stderr.write(usage)
        return 2
    try:
        with open(args[0]) as fh:
            cfg = json.load(fh)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"shim-monitor: {args[0]}: {exc}\n")
        return 2
    report = fork_monitor(cfg)
    if report.startswith("ok "):
        sys.stdout.write(report[3:] + "\n")
        return 0
    sys.stderr.write(report.removeprefix("error ") + "\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
