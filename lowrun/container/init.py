"""The container side of `create`: the code that runs in the forked children.

Two stages, as in runc's nsexec:
- stage 1 enters or creates the user namespace (the parent writes its id maps), joins
  the namespaces given by path, unshares the new ones and forks stage 2, then exits;
- stage 2 is the init, PID 1 of a new pid namespace. It waits until the parent has put
  it in its cgroup, builds the rootfs, lets the parent run the createRuntime hooks,
  pivots, drops privileges, reports "ready", then blocks on the exec fifo until
  `start` opens it, and execs the user's process.
Nothing here returns: each stage ends in os._exit or execve.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

from lowrun import hooks, namespaces, process, rootfs, syscalls
from lowrun.namespaces import NamespacePlan
from lowrun.sync import Channel


@dataclass
class InitContext:
    container_id: str
    bundle: str
    rootfs: str
    config: dict[str, Any]
    plan: NamespacePlan
    fifo_fd: int
    """An O_PATH fd of the exec fifo, opened by the parent: the init may not see its path."""
    channel: Channel
    console_socket: str | None
    preserve_fds: int
    no_pivot: bool


def _fail(channel: Channel, exc: BaseException) -> NoReturn:
    try:
        channel.send_error(exc)
    except OSError:
        print(f"lowrun init: {exc}", file=sys.stderr)
    os._exit(1)


def stage1(ctx: InitContext) -> NoReturn:
    try:
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
        opened = namespaces.open_paths(ctx.plan.join)
        user_fds = [o for o in opened if o[0] == "user"]
        namespaces.enter(user_fds)
        if "user" in ctx.plan.new:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            ctx.channel.send("userns")
            ctx.channel.recv("maps-written")
        if ctx.plan.has("user"):
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        namespaces.enter([o for o in opened if o[0] != "user"])
        syscalls.unshare(ctx.plan.unshare_flags(exclude=("user", "cgroup")))
        pid = os.fork()
        if pid == 0:
            init(ctx)
        ctx.channel.send("pid", pid=pid)
    except BaseException as exc:
        _fail(ctx.channel, exc)
    os._exit(0)


def _hook_state(ctx: InitContext, pid: int) -> dict[str, Any]:
    return {
        "ociVersion": ctx.config.get("ociVersion", ""),
        "id": ctx.container_id,
        "status": "creating",
        "pid": pid,
        "bundle": ctx.bundle,
        "annotations": ctx.config.get("annotations") or {},
    }


def init(ctx: InitContext) -> NoReturn:
    try:
        _init(ctx)
    except BaseException as exc:
        _fail(ctx.channel, exc)
    os._exit(127)


def _init(ctx: InitContext) -> None:
    config = ctx.config
    proc: dict[str, Any] = config["process"]
    msg = ctx.channel.recv("cgroup-ready")
    host_pid = int(msg["pid"])
    if "cgroup" in ctx.plan.new:
        syscalls.unshare(syscalls.CLONE_NEWCGROUP)
    os.setsid()
    _set_names(ctx)
    if "network" in ctx.plan.new:
        from lowrun.network import loopback_up

        loopback_up()

    rootfs.prepare(config, ctx.bundle, ctx.rootfs)
    ctx.channel.send("hooks")
    ctx.channel.recv("hooks-done")
    hooks.run_hooks(hooks.hooks_for(config, "createContainer"), _hook_state(ctx, host_pid),
                    "createContainer")
    rootfs.enter(ctx.rootfs, no_pivot=ctx.no_pivot)
    if proc.get("terminal"):
        _setup_terminal(ctx)
    rootfs.finish(config)

    process.apply_rlimits(proc.get("rlimits"))
    seccomp_filter = _finalize_privileges(config)
    user = proc.get("user") or {}
    process.change_dir(proc.get("cwd") or "/")
    env = list(proc.get("env") or [])
    executable = process.find_executable(proc["args"][0], env)
    process.set_umask(user)
    process.cloexec_from(3 + ctx.preserve_fds)
    ctx.channel.send("ready")
    ctx.channel.close()

    writer = os.open(f"/proc/self/fd/{ctx.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(writer, b"0")
    os.close(writer)
    os.close(ctx.fifo_fd)
    hooks.run_hooks(hooks.hooks_for(config, "startContainer"), _hook_state(ctx, host_pid),
                    "startContainer")
    if seccomp_filter is not None and proc.get("noNewPrivileges"):
        seccomp_filter.load()
    process.exec_process(executable, proc["args"], env)


def _set_names(ctx: InitContext) -> None:
    hostname = ctx.config.get("hostname")
    domainname = ctx.config.get("domainname")
    if (hostname or domainname) and not ctx.plan.has("uts"):
        from lowrun.errors import ConfigError

        raise ConfigError("$.hostname", "setting a hostname needs a private UTS namespace")
    if hostname:
        syscalls.sethostname(hostname)
    if domainname:
        syscalls.setdomainname(domainname)


def _setup_terminal(ctx: InitContext) -> None:
    assert ctx.console_socket is not None
    _setup_terminal_for_exec(ctx.console_socket, mount_console=True)


def _setup_terminal_for_exec(console_socket: str, mount_console: bool = False) -> None:
    """A pty from the container's devpts: master to the console socket, slave our stdio."""
    from lowrun import console

    master, slave = console.open_pty()
    if mount_console:
        console.mount_console(slave)
    console.send_fd(console_socket, master)
    os.close(master)
    console.become_terminal(slave)


def _finalize_privileges(config: dict[str, Any]) -> Any:
    """no_new_privs, seccomp (unless it must wait for exec), capabilities, user.

    Returns the seccomp filter still to be loaded right before exec, if any.
    """
    proc: dict[str, Any] = config["process"]
    nnp = bool(proc.get("noNewPrivileges"))
    seccomp_spec = (config.get("linux") or {}).get("seccomp")
    seccomp_filter = None
    if seccomp_spec:
        from lowrun import seccomp

        seccomp_filter = seccomp.compile(seccomp_spec)
    if nnp:
        syscalls.set_no_new_privs()
    if seccomp_filter is not None and not nnp:
        seccomp_filter.load()
    from lowrun import capabilities

    caps = capabilities.parse(proc.get("capabilities"))
    capabilities.drop_bounding(caps)
    capabilities.keep_for_setuid()
    process.set_user(proc.get("user") or {})
    capabilities.apply(caps)
    return seccomp_filter
