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

import _socket
import os
import sys

# Everything the init uses after pivot_root must be imported before it: the runtime's
# files are not visible from inside the container.
from lowrun import capabilities, console, hooks, namespaces, network, process, rootfs, syscalls
from lowrun.namespaces import NamespacePlan
from lowrun.sync import Channel

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


class InitContext:
    """What the forked stages need to know; `fifo_fd` is an O_PATH fd of the exec fifo,
    opened by the parent: the init may not see its path."""

    def __init__(
        self,
        container_id: str,
        bundle: str,
        rootfs: str,
        config: dict[str, Any],
        plan: NamespacePlan,
        fifo_fd: int,
        channel: Channel,
        console_socket: str | None,
        preserve_fds: int,
        no_pivot: bool,
    ) -> None:
        self.container_id = container_id
        self.bundle = bundle
        self.rootfs = rootfs
        self.config = config
        self.plan = plan
        self.fifo_fd = fifo_fd
        self.channel = channel
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds
        self.no_pivot = no_pivot


def _fail(channel: Channel, exc: BaseException) -> NoReturn:
    try:
        channel.send_error(exc)
    except OSError:
        print(f"lowrun init: {exc}", file=sys.stderr)
    os._exit(1)


def stage1(ctx: InitContext) -> NoReturn:
    try:
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
        # Compiled here, still as host root: once in a user namespace the init is an
        # unprivileged host uid that may not read the interpreter's modules or libseccomp.
        priv = prepare_privileges(ctx.config)
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
            init(ctx, priv)
        ctx.channel.send("pid", pid=pid)
    except BaseException as exc:
        _fail(ctx.channel, exc)
    os._exit(0)


def init(ctx: InitContext, priv: Privileges) -> NoReturn:
    try:
        _init(ctx, priv)
    except BaseException as exc:
        _fail(ctx.channel, exc)
    os._exit(127)


def _init(ctx: InitContext, priv: Privileges) -> None:
    config = ctx.config
    proc: dict[str, Any] = config["process"]
    os.setsid()
    _set_names(ctx)
    if "network" in ctx.plan.new:
        network.loopback_up()
    console_conn = None
    if proc.get("terminal") and ctx.console_socket:
        console_conn = console.connect(ctx.console_socket)

    host_pid = 0

    def join_cgroup() -> None:
        """The parent moves us into the cgroup (its first write there costs the kernel
        ~10 ms) while we mount; the cgroup mounts wait for it."""
        nonlocal host_pid
        host_pid = int(ctx.channel.recv("go")["pid"])
        if "cgroup" in ctx.plan.new:
            syscalls.unshare(syscalls.CLONE_NEWCGROUP)

    rootfs.prepare(config, ctx.bundle, ctx.rootfs, join_cgroup=join_cgroup)
    ctx.channel.send("hooks")
    ctx.channel.recv("hooks-done")
    hooks.run_phase(config, "createContainer",
                    hooks.state_for(config, ctx.container_id, "creating", host_pid, ctx.bundle))
    rootfs.enter(ctx.rootfs, no_pivot=ctx.no_pivot)
    if console_conn is not None:
        setup_terminal(console_conn, mount_console=True)
    rootfs.finish(config)

    process.apply_rlimits(proc.get("rlimits"))
    apply_privileges(priv)
    process.change_dir(proc.get("cwd") or "/")
    env = list(proc.get("env") or [])
    executable = process.find_executable(proc["args"][0], env)
    process.set_umask(priv.user)
    process.cloexec_from(3 + ctx.preserve_fds)
    ctx.channel.send("ready")
    ctx.channel.close()

    writer = os.open(f"/proc/self/fd/{ctx.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(writer, b"0")
    os.close(writer)
    os.close(ctx.fifo_fd)
    hooks.run_phase(config, "startContainer",
                    hooks.state_for(config, ctx.container_id, "created", host_pid, ctx.bundle))
    load_late_seccomp(priv)
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


def setup_terminal(console_socket: _socket.socket, mount_console: bool = False) -> None:
    """A pty from the container's devpts: master to the console socket, slave our stdio."""
    master, slave = console.open_pty()
    if mount_console:
        console.mount_console(slave)
    console.send_fd(console_socket, master)
    os.close(master)
    console.become_terminal(slave)


class Privileges:
    """What the process will run with, worked out while the runtime's files are still
    visible (before pivot_root or setns into the container's mount namespace)."""

    def __init__(
        self,
        capabilities: capabilities.CapabilitySets,
        user: dict[str, Any],
        no_new_privs: bool,
        seccomp: Any = None,
    ) -> None:
        self.capabilities = capabilities
        self.user = user
        self.no_new_privs = no_new_privs
        self.seccomp = seccomp


def prepare_privileges(config: dict[str, Any]) -> Privileges:
    proc: dict[str, Any] = config["process"]
    seccomp_spec = (config.get("linux") or {}).get("seccomp")
    seccomp_filter = None
    if seccomp_spec is not None:
        from lowrun import seccomp

        if seccomp.wanted(seccomp_spec):
            seccomp_filter = seccomp.compile(seccomp_spec)
    return Privileges(
        capabilities=capabilities.parse(proc.get("capabilities")),
        user=proc.get("user") or {},
        no_new_privs=bool(proc.get("noNewPrivileges")),
        seccomp=seccomp_filter,
    )


def apply_privileges(priv: Privileges) -> None:
    """no_new_privs, seccomp (unless it must wait until exec), capabilities, user: runc's order."""
    if priv.no_new_privs:
        syscalls.set_no_new_privs()
    if priv.seccomp is not None and not priv.no_new_privs:
        priv.seccomp.load()
    capabilities.drop_bounding(priv.capabilities)
    capabilities.keep_for_setuid()
    process.set_user(priv.user)
    capabilities.apply(priv.capabilities)


def load_late_seccomp(priv: Privileges) -> None:
    """With no_new_privs the filter is loaded last, so that it need not allow lowrun's calls."""
    if priv.seccomp is not None and priv.no_new_privs:
        priv.seccomp.load()
