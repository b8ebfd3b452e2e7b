"""The runtime side of `create`: fork the init, wire it into its cgroup, record its state.

Either the container ends up created (its init blocked on the exec fifo, state.json
written) or nothing is left: no process, no cgroup, no state directory.
"""

from __future__ import annotations

import os

from lowrun import cgroups, exeguard, hooks, namespaces, process, signals, syscalls
from lowrun.cgroups import prewarm
from lowrun.errors import ConfigError, UsageError, suppress
from lowrun.spec.load import load_bundle
from lowrun.state import (
    CREATING,
    ContainerState,
    StateStore,
    now_rfc3339,
    process_start_time,
)
from lowrun.sync import Channel

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CHILD_TIMEOUT = 60.0


class CreateOptions:
    def __init__(
        self,
        bundle: str,
        pid_file: str | None = None,
        console_socket: str | None = None,
        preserve_fds: int = 0,
        no_pivot: bool = False,
    ) -> None:
        self.bundle = bundle
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds
        self.no_pivot = no_pivot


def create(store: StateStore, container_id: str, opts: CreateOptions) -> ContainerState:
    bundle = load_bundle(opts.bundle)
    config = bundle.config
    exeguard.ensure(config)
    process.close_inherited_from(3 + opts.preserve_fds)
    prewarm.start()
    if (config.get("process") or {}).get("terminal") and not opts.console_socket:
        raise UsageError("process.terminal is true: --console-socket is required")
    plan = namespaces.plan(config)
    store.reserve(container_id)
    builder = _Builder(store, container_id, config)
    try:
        fifo = store.fifo(container_id)
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)
        fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        parent_end, child_end = Channel.pair()
        syscalls.set_child_subreaper()
        stage1_pid = os.fork()
        if stage1_pid == 0:
            # The container side imports its modules (rootfs, capabilities, ...) here, in
            # the child, while the parent sets up the cgroup: the two overlap.
            parent_end.close()
            from lowrun.container import init

            init.stage1(init.InitContext(
                container_id=container_id,
                bundle=bundle.path,
                rootfs=bundle.rootfs,
                config=config,
                plan=plan,
                fifo_fd=fifo_fd,
                channel=child_end,
                console_socket=opts.console_socket,
                preserve_fds=opts.preserve_fds,
                no_pivot=opts.no_pivot,
            ))
        child_end.close()
        os.close(fifo_fd)
        state = builder.build(parent_end, stage1_pid, bundle.path, bundle.rootfs, plan)
    except BaseException:
        builder.undo()
        raise
    if opts.pid_file:
        write_pid_file(opts.pid_file, state.pid)
    return state


class _Builder:
    """Drives the children through the create protocol and remembers what to undo."""

    def __init__(self, store: StateStore, container_id: str, config: dict[str, Any]) -> None:
        self.store = store
        self.container_id = container_id
        self.config = config
        self.init_pid = 0
        self.cgroup: cgroups.CgroupManager | None = None

    def build(
        self,
        channel: Channel,
        stage1_pid: int,
        bundle: str,
        rootfs: str,
        plan: namespaces.NamespacePlan,
    ) -> ContainerState:
        linux = self.config.get("linux") or {}
        self.cgroup = cgroups.create_manager(self.container_id, linux.get("cgroupsPath"))
        msg = channel.recv(timeout=CHILD_TIMEOUT)
        if msg["type"] == "userns":
            write_id_maps(stage1_pid, self.config)
            channel.send("maps-written")
            msg = channel.recv("pid", timeout=CHILD_TIMEOUT)
        if msg["type"] != "pid":
            raise ConfigError("$", f"unexpected message {msg['type']} from the init")
        self.init_pid = int(msg["pid"])
        os.waitpid(stage1_pid, 0)
        # The init builds its rootfs meanwhile, and waits for "go" before it mounts a
        # cgroup filesystem or unshares its cgroup namespace (see init.join_cgroup).
        self.cgroup.apply(self.init_pid)
        self.cgroup.set(linux.get("resources") or {}, devices=linux.get("devices") or [])
        process.set_oom_score_adj(self.init_pid, self.config["process"].get("oomScoreAdj"))
        channel.send("go", pid=self.init_pid)

        channel.recv("hooks", timeout=CHILD_TIMEOUT)
        hook_state = hooks.state_for(self.config, self.container_id, CREATING, self.init_pid,
                                     bundle)
        hooks.run_phase(self.config, "prestart", hook_state)
        hooks.run_phase(self.config, "createRuntime", hook_state)
        channel.send("hooks-done")
        channel.recv("ready", timeout=CHILD_TIMEOUT)
        channel.close()

        start = process_start_time(self.init_pid)
        ns_types = sorted(plan.new | set(plan.join))
        state = ContainerState(
            id=self.container_id,
            bundle=bundle,
            rootfs=rootfs,
            pid=self.init_pid,
            pid_start=start or 0,
            created=now_rfc3339(),
            config=self.config,
            cgroup=self.cgroup.to_state(),
            namespaces=namespaces.paths_of(self.init_pid, ns_types),
            annotations=self.config.get("annotations") or {},
        )
        self.store.save(state)
        return state

    def undo(self) -> None:
        if self.init_pid:
            with suppress(ProcessLookupError):
                os.kill(self.init_pid, signals.SIGKILL)
            with suppress(ChildProcessError):
                os.waitpid(self.init_pid, 0)
        process.reap_exited_children()
        if self.cgroup is not None:
            with suppress(Exception):
                self.cgroup.destroy()
        with suppress(OSError):
            self.store.remove(self.container_id)


def write_id_maps(pid: int, config: dict[str, Any]) -> None:
    linux = config.get("linux") or {}
    for kind, key in (("uid", "uidMappings"), ("gid", "gidMappings")):
        lines = "".join(
            f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux.get(key) or []
        )
        if not lines:
            continue
        try:
            with open(f"/proc/{pid}/{kind}_map", "w") as f:
                f.write(lines)
        except OSError as exc:
            problem = f"cannot write {kind}_map: {exc.strerror}"
            raise ConfigError(f"$.linux.{key}", problem) from None


def write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)
