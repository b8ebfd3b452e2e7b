"""`exec`: a new process in an existing container, with everything its init has.

The new process joins every namespace of the init, its cgroup, and gets the
container's seccomp filter, capabilities (or those asked), no_new_privs and user,
exactly as the init did. Like the init it is forked in two stages, so that it is a
member of the container's pid namespace, and lowrun (a subreaper) waits for it.
"""

from __future__ import annotations

import _socket
import os

from lowrun import console, exeguard, namespaces, process, syscalls
from lowrun.cgroups import prewarm
from lowrun.container.create import write_pid_file
from lowrun.container.init import (
    Privileges,
    apply_privileges,
    load_late_seccomp,
    prepare_privileges,
    setup_terminal,
)
from lowrun.container.lifecycle import cgroup_of, status_of
from lowrun.errors import InvalidState, LowrunError, UsageError
from lowrun.state import CREATED, RUNNING, ContainerState, StateStore
from lowrun.sync import Channel

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


class ExecOptions:
    def __init__(
        self,
        process: dict[str, Any],
        detach: bool = False,
        pid_file: str | None = None,
        console_socket: str | None = None,
        preserve_fds: int = 0,
    ) -> None:
        self.process = process
        self.detach = detach
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds


def exec_in(store: StateStore, container_id: str, opts: ExecOptions) -> int:
    """Run opts.process in the container; its exit code, or 0 once started with detach."""
    state = store.load(container_id)
    status = status_of(store, state)
    if status not in (CREATED, RUNNING):
        raise InvalidState(f"cannot exec in a container that is {status}")
    if opts.process.get("terminal") and not opts.console_socket:
        raise UsageError("--tty needs --console-socket")
    exeguard.ensure(state.config, opts.process)
    process.close_inherited_from(3 + opts.preserve_fds)
    prewarm.start()
    parent_end, child_end = Channel.pair()
    syscalls.set_child_subreaper()
    stage1_pid = os.fork()
    if stage1_pid == 0:
        parent_end.close()
        _stage1(state, opts, child_end)
    child_end.close()
    try:
        cgroup_of(state).apply(stage1_pid)
        parent_end.send("cgroup-ready")
        pid = int(parent_end.recv("pid", timeout=60)["pid"])
        os.waitpid(stage1_pid, 0)
        _await_exec(parent_end)
    except BaseException:
        process.reap_exited_children()
        raise
    finally:
        parent_end.close()
    if opts.pid_file:
        write_pid_file(opts.pid_file, pid)
    if opts.detach:
        return 0
    from lowrun.container.run import wait_forwarding

    return wait_forwarding(pid)


def _await_exec(channel: Channel) -> None:
    """The channel closes on execve (it is close-on-exec); an error arrives as a message."""
    try:
        channel.recv("exec", timeout=60)
    except LowrunError as exc:
        if "exited before" in str(exc):
            return
        raise


def _stage1(state: ContainerState, opts: ExecOptions, channel: Channel) -> NoReturn:
    try:
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
        channel.recv("cgroup-ready")
        config = {"process": opts.process,
                  "linux": {"seccomp": (state.config.get("linux") or {}).get("seccomp")}}
        priv = prepare_privileges(config)
        console_conn = None
        if opts.process.get("terminal") and opts.console_socket:
            console_conn = console.connect(opts.console_socket)
        joinable = [t for t in state.namespaces if not namespaces.same_as_self(state.pid, t)]
        paths = namespaces.paths_of(state.pid, joinable)
        opened = namespaces.open_paths(paths)
        namespaces.enter(opened)
        if "user" in joinable:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        pid = os.fork()
        if pid == 0:
            _exec_child(opts, priv, console_conn, channel)
        channel.send("pid", pid=pid)
    except BaseException as exc:
        channel.send_error(exc)
        os._exit(1)
    os._exit(0)


def _exec_child(
    opts: ExecOptions, priv: Privileges, console_conn: _socket.socket | None, channel: Channel
) -> NoReturn:
    try:
        proc = opts.process
        if console_conn is not None:
            os.setsid()
            setup_terminal(console_conn)
        process.apply_rlimits(proc.get("rlimits"))
        apply_privileges(priv)
        process.change_dir(proc.get("cwd") or "/")
        env = list(proc.get("env") or [])
        executable = process.find_executable(proc["args"][0], env)
        process.set_umask(proc.get("user") or {})
        process.cloexec_from(3 + opts.preserve_fds)
        load_late_seccomp(priv)
        process.exec_process(executable, proc["args"], env)
    except BaseException as exc:
        channel.send_error(exc)
    os._exit(127)


def exec_process_spec(
    state: ContainerState,
    args: list[str],
    *,
    env: list[str] | None = None,
    cwd: str | None = None,
    user: dict[str, Any] | None = None,
    tty: bool = False,
    caps: list[str] | None = None,
    no_new_privs: bool | None = None,
) -> dict[str, Any]:
    """The process of an exec given as flags: the container's process, overridden."""
    base: dict[str, Any] = dict(state.config.get("process") or {})
    proc = {k: v for k, v in base.items() if k not in ("args", "terminal", "consoleSize")}
    proc["args"] = args
    proc["terminal"] = tty
    if env:
        merged = {e.split("=", 1)[0]: e for e in proc.get("env") or []}
        merged.update({e.split("=", 1)[0]: e for e in env})
        proc["env"] = list(merged.values())
    if cwd:
        proc["cwd"] = cwd
    if user is not None:
        proc["user"] = user
    if caps:
        current = dict(proc.get("capabilities") or {})
        for key in ("bounding", "effective", "permitted", "ambient"):
            current[key] = sorted(set(current.get(key) or []) | set(caps))
        proc["capabilities"] = current
    if no_new_privs is not None:
        proc["noNewPrivileges"] = no_new_privs
    return proc
