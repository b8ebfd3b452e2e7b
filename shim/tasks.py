"""Tasks: running containers, one monitor process per task.

`TaskManager` is the local implementation. It writes the bundle, starts the task's
monitor (which runs the runtime's create, holds stdio and reaps), and talks to it over
the monitor's socket; the runtime driver does pause, resume, ps and update. Each task
has a watcher thread subscribed to its monitor, which turns exits and OOM kills into
events. Everything a task needs is on disk under STATE/tasks/NS/ID (task.json, the
bundle, exit.json written by the monitor), so a restarted shimd finds its monitors
again (`recover`) and publishes the exits it missed.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import select
import shutil
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shim import bundle as bundles
from shim import errors
from shim.api.v1 import events_pb2
from shim.metadata import atomic_write_json, validate_id
from shim.monitor import cgroup
from shim.monitor import client as monitor
from shim.monitor.protocol import EXIT_NAME, MonitorError, socket_path
from shim.runtime import RuntimeDriver, resolve, runtime_root
from shim.services import ServiceContext
from shim.services.containers import ContainerService
from shim.services.events import EventBus, matches, parse_filters

log = logging.getLogger(__name__)

TASK_FILE = "task.json"
PAUSED_MARK = "paused"
EXIT_PUBLISHED_MARK = "exit-published"

_KINDS: dict[str, type[errors.ShimError]] = {
    "not_found": errors.NotFound,
    "already_exists": errors.AlreadyExists,
    "invalid_argument": errors.InvalidArgument,
    "failed_precondition": errors.FailedPrecondition,
    "unavailable": errors.Unavailable,
    "internal": errors.Internal,
}


def _shim_error(exc: MonitorError) -> errors.ShimError:
    return _KINDS.get(exc.kind, errors.Internal)(str(exc))


@dataclass
class Task:
    namespace: str
    id: str
    dir: Path
    socket: str
    runtime: RuntimeDriver
    pid: int
    rootfs_mounted: bool
    terminal: bool
    stdio: dict[str, Any]
    lock: threading.Lock = field(default_factory=threading.Lock)
    exits_published: set[str] = field(default_factory=set)
    monitor_pid: int = 0
    dead_exit: dict[str, Any] | None = None
    """The exit recorded on disk when the monitor is gone (it died or was killed)."""

    @property
    def paused(self) -> bool:
        return (self.dir / PAUSED_MARK).exists()

    def call(self, op: str, timeout: float | None = 60.0, **args: Any) -> dict[str, Any]:
        if self.dead_exit is not None:
            raise errors.FailedPrecondition(
                f"task {self.id!r} has no monitor any more (it exited with "
                f"{self.dead_exit.get('exit_status')}): delete the task"
            )
        try:
            return monitor.call(self.socket, op, timeout=timeout, **args)
        except MonitorError as exc:
            raise _shim_error(exc) from None


class TaskManager:
    def __init__(self, ctx: ServiceContext, containers: ContainerService, events: EventBus) -> None:
        self.ctx = ctx
        self.containers = containers
        self.events = events
        self.tasks: dict[tuple[str, str], Task] = {}
        self._creating: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        (ctx.state / "s").mkdir(parents=True, exist_ok=True)
        (ctx.state / "tasks").mkdir(parents=True, exist_ok=True)
        self.launcher = monitor.MonitorLauncher(
            str(ctx.state), use_zygote=bool(ctx.shared.get("monitor_zygote", True)))

    def close(self) -> None:
        """shimd stops: the zygote goes, monitors and containers stay."""
        self.launcher.close()

    # ---- lookup -------------------------------------------------------------------

    def has_task(self, namespace: str, container_id: str) -> bool:
        with self._lock:
            key = (namespace, container_id)
            return key in self.tasks or key in self._creating

    def _get(self, namespace: str, container_id: str) -> Task:
        with self._lock:
            task = self.tasks.get((namespace, container_id))
        if task is None:
            raise errors.NotFound(
                f"task {container_id!r} not found in namespace {namespace!r}: "
                "create it with Tasks.Create"
            )
        return task

    # ---- create -------------------------------------------------------------------

    def create(
        self,
        namespace: str,
        container_id: str,
        rootfs: list[dict[str, Any]] | None = None,
        stdio: dict[str, Any] | None = None,
        log_config: dict[str, Any] | None = None,
    ) -> int:
        record = self.containers.get(namespace, container_id)
        key = (namespace, container_id)
        with self._lock:
            if key in self.tasks or key in self._creating:
                raise errors.AlreadyExists(
                    f"container {container_id!r} in namespace {namespace!r} already has a task: "
                    "delete it before creating another"
                )
            self._creating.add(key)
        try:
            return self._create(namespace, record.id, record.spec, record.runtime,
                                record.snapshot_key, rootfs or [], stdio or {}, log_config)
        finally:
            with self._lock:
                self._creating.discard(key)

    def _create(
        self, namespace: str, cid: str, spec_in: dict[str, Any], runtime_name: str,
        snapshot_key: str, rootfs: list[dict[str, Any]], stdio: dict[str, Any],
        log_config: dict[str, Any] | None,
    ) -> int:
        binary = resolve(runtime_name or self.ctx.runtime)
        _check_stdio(stdio)
        if log_config and log_config.get("path"):
            _check_log(log_config)
        else:
            log_config = None
        task_dir = self.ctx.state / "tasks" / namespace / cid
        task_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            task_dir.mkdir()
        except FileExistsError:
            raise errors.AlreadyExists(
                f"task directory {task_dir} exists: a task of {cid!r} was not cleaned up"
            ) from None
        mounted = False
        try:
            spec = copy.deepcopy(spec_in)
            root = spec.setdefault("root", {})
            if not rootfs and snapshot_key:
                rootfs = self._snapshot_mounts(namespace, snapshot_key)
            if rootfs:
                source = bundles.rootfs_without_mount(rootfs)
                if source is None:
                    bundles.mount_rootfs(rootfs, task_dir / "rootfs")
                    mounted = True
                    source = str(task_dir / "rootfs")
                root["path"] = source
            elif not (os.path.isabs(str(root.get("path", ""))) and os.path.isdir(root["path"])):
                raise errors.InvalidArgument(
                    f"task {cid!r} has no root filesystem: pass rootfs mounts, give the "
                    "container a snapshot_key, or set an absolute $.root.path in its spec"
                )
            spec["process"]["terminal"] = bool(stdio.get("terminal"))
            spec.setdefault("linux", {}).setdefault("cgroupsPath", f"/berth-{namespace}-{cid}")
            bundles.check_spec(spec)
            bundles.write_config(task_dir, spec)
            rt = RuntimeDriver(binary, runtime_root(self.ctx.state, binary, namespace))
            rt.root.mkdir(parents=True, exist_ok=True)
            sock = socket_path(str(self.ctx.state), namespace, cid)
            info = {"namespace": namespace, "id": cid, "runtime": binary,
                    "runtime_root": str(rt.root), "rootfs_mounted": mounted,
                    "stdio": stdio, "log": log_config, "socket": sock}
            atomic_write_json(task_dir / TASK_FILE, info)
            try:
                started = self.launcher.start(str(task_dir), {
                    "id": cid, "namespace": namespace, "bundle": str(task_dir),
                    "runtime": binary, "runtime_root": str(rt.root), "socket": sock,
                    "task_dir": str(task_dir), "stdio": stdio, "log": log_config,
                })
            except MonitorError as exc:
                raise errors.FailedPrecondition(
                    f"cannot create task {cid!r} with {rt.name}: {exc}") from None
        except BaseException:
            if mounted:
                bundles.unmount_rootfs(task_dir / "rootfs")
            shutil.rmtree(task_dir, ignore_errors=True)
            raise
        task = Task(namespace, cid, task_dir, sock, rt, int(started["pid"]), mounted,
                    bool(stdio.get("terminal")), stdio, monitor_pid=int(started["monitor_pid"]))
        with self._lock:
            self.tasks[(namespace, cid)] = task
        self._watch(task)
        self.events.publish(namespace, "/tasks/create", "task_create", events_pb2.TaskCreate(
            container_id=cid, bundle=str(task_dir), pid=task.pid, terminal=task.terminal))
        return task.pid

    def _snapshot_mounts(self, namespace: str, key: str) -> list[dict[str, Any]]:
        """Mounts of a snapshot from the snapshots service, when it is there."""
        snapshots = self.ctx.shared.get("snapshots")
        mounts_of = getattr(snapshots, "mounts", None)
        if mounts_of is None:
            raise errors.FailedPrecondition(
                f"snapshot_key {key!r} is set but this shimd has no snapshots service: "
                "pass rootfs mounts in Tasks.Create"
            )
        # the overlay snapshotter keys are global (mounts(key)); a namespaced one
        # would take (namespace, key)
        takes_namespace = len(inspect.signature(mounts_of).parameters) >= 2
        out = []
        for m in mounts_of(namespace, key) if takes_namespace else mounts_of(key):
            if isinstance(m, dict):
                out.append(m)
            else:
                out.append({"type": m.type, "source": m.source, "options": list(m.options)})
        return out

    # ---- the watcher: monitor events -> shimd events ------------------------------

    def _watch(self, task: Task) -> None:
        """Subscribe to the monitor's events, before returning so that no exit is missed,
        and follow them on a thread of their own until the monitor goes away."""
        conn = monitor.MonitorConnection(task.socket, timeout=10)
        try:
            events = conn.events()
        except BaseException:
            conn.close()
            raise

        def loop() -> None:
            try:
                for event in events:
                    self._on_monitor_event(task, event)
            except (OSError, MonitorError, ValueError) as exc:
                log.debug("watcher of %s/%s ends: %s", task.namespace, task.id, exc)
            finally:
                conn.close()

        threading.Thread(target=loop, name=f"watch-{task.namespace}-{task.id}",
                         daemon=True).start()

    def _on_monitor_event(self, task: Task, event: dict[str, Any]) -> None:
        if event.get("type") == "exit":
            self._publish_exit(task, event)
        elif event.get("type") == "oom":
            self.events.publish(task.namespace, "/tasks/oom", "task_oom",
                                events_pb2.TaskOOM(container_id=task.id))

    def _publish_exit(self, task: Task, info: dict[str, Any]) -> None:
        """Publish the exit of a process once, whoever learns of it first."""
        exec_id = str(info.get("exec_id") or "")
        with task.lock:
            if exec_id in task.exits_published:
                return
            task.exits_published.add(exec_id)
            ev = events_pb2.TaskExit(
                container_id=task.id, exec_id=exec_id, pid=int(info.get("pid") or 0),
                exit_status=int(info.get("exit_status") or 0),
                oom_killed=bool(info.get("oom_killed")))
            ev.exited_at.FromNanoseconds(int(info.get("exited_at") or 0))
            self.events.publish(task.namespace, "/tasks/exit", "task_exit", ev)
            if not exec_id:
                (task.dir / EXIT_PUBLISHED_MARK).touch()

    # ---- recovery after a restart -------------------------------------------------

    def recover(self) -> list[Task]:
        """Find the tasks a previous shimd left, re-attach to their monitors, and
        publish the exits that happened while no shimd was there."""
        found = []
        for info_path in sorted((self.ctx.state / "tasks").glob(f"*/*/{TASK_FILE}")):
            try:
                task = self._recover_one(info_path.parent)
            except Exception as exc:  # one broken task must not stop the others
                log.warning("cannot recover task in %s: %s", info_path.parent, exc)
                continue
            found.append(task)
        return found

    def _recover_one(self, task_dir: Path) -> Task:
        info = json.loads((task_dir / TASK_FILE).read_text())
        rt = RuntimeDriver(info["runtime"], Path(info["runtime_root"]))
        task = Task(info["namespace"], info["id"], task_dir, info["socket"], rt, 0,
                    bool(info.get("rootfs_mounted")), bool(info.get("stdio", {}).get("terminal")),
                    info.get("stdio") or {})
        if (task_dir / EXIT_PUBLISHED_MARK).exists():
            task.exits_published.add("")
        try:
            state = monitor.call(task.socket, "state", timeout=10)
        except (MonitorError, OSError):
            state = None
        if state is None:
            task.dead_exit = _read_exit(task_dir)
        else:
            task.pid = int(state["init"]["pid"])
            task.monitor_pid = int(state["monitor_pid"])
        with self._lock:
            self.tasks[(task.namespace, task.id)] = task
        if state is not None:
            self._watch(task)
            init = state["init"]
            if init["status"] == "stopped":
                self._publish_exit(task, init)
            for exec_state in state.get("execs", {}).values():
                if exec_state["status"] == "stopped":
                    task.exits_published.add(exec_state["exec_id"])  # nobody waits on those
        else:
            assert task.dead_exit is not None
            task.pid = int(task.dead_exit.get("pid") or 0)
            self._publish_exit(task, task.dead_exit)
        log.info("recovered task %s/%s (%s)", task.namespace, task.id,
                 "monitor gone" if state is None else state["init"]["status"])
        return task

    # ---- lifecycle ----------------------------------------------------------------

    def start(self, namespace: str, container_id: str, exec_id: str = "") -> int:
        task = self._get(namespace, container_id)
        pid = int(task.call("start", exec_id=exec_id)["pid"])
        if exec_id:
            self.events.publish(namespace, "/tasks/exec-started", "task_exec_started",
                                events_pb2.TaskExecStarted(container_id=container_id,
                                                           exec_id=exec_id, pid=pid))
        else:
            self.events.publish(namespace, "/tasks/start", "task_start",
                                events_pb2.TaskStart(container_id=container_id, pid=pid))
        return pid

    def kill(self, namespace: str, container_id: str, signal: int, exec_id: str = "",
             all_processes: bool = False) -> None:
        if not 0 < signal < 65:
            raise errors.InvalidArgument(f"signal {signal} is not a signal number (1-64)")
        task = self._get(namespace, container_id)
        if task.paused and not exec_id and signal != 9:
            log.debug("signal %d to paused task %s is delivered on resume", signal, container_id)
        task.call("kill", exec_id=exec_id, signal=signal, all=all_processes)

    def wait(self, namespace: str, container_id: str, exec_id: str = "") -> dict[str, Any]:
        task = self._get(namespace, container_id)
        if task.dead_exit is not None and not exec_id:
            return task.dead_exit
        result = task.call("wait", timeout=None, exec_id=exec_id)
        self._publish_exit(task, result)
        return result

    def delete(self, namespace: str, container_id: str, exec_id: str = "",
               force: bool = False) -> dict[str, Any]:
        task = self._get(namespace, container_id)
        if exec_id:
            return task.call("delete", exec_id=exec_id)
        if task.dead_exit is not None:
            result = task.dead_exit
            try:
                task.runtime.delete_force(container_id)
            except errors.ShimError as exc:
                log.debug("runtime delete of %s without monitor: %s", container_id, exc)
        else:
            state = task.call("state")["init"]
            if force and state["status"] != "stopped":
                if task.paused:
                    task.call("kill", signal=9, all=True)
                    self._resume_quietly(task)
                else:
                    task.call("kill", signal=9, all=True)
                if state["status"] == "running":
                    self._publish_exit(task, task.call("wait", timeout=None))
            result = task.call("delete")
            if state["status"] == "running" or state["status"] == "stopped":
                self._publish_exit(task, result)
            _wait_gone(task.monitor_pid)
        self._cleanup(task)
        ev = events_pb2.TaskDelete(container_id=container_id, pid=int(result.get("pid") or 0),
                                   exit_status=int(result.get("exit_status") or 0))
        ev.exited_at.FromNanoseconds(int(result.get("exited_at") or 0))
        self.events.publish(namespace, "/tasks/delete", "task_delete", ev)
        return result

    def _resume_quietly(self, task: Task) -> None:
        try:
            task.runtime.resume(task.id)
        except errors.ShimError as exc:
            log.debug("resume of %s before delete: %s", task.id, exc)
        (task.dir / PAUSED_MARK).unlink(missing_ok=True)

    def _cleanup(self, task: Task) -> None:
        if task.rootfs_mounted:
            bundles.unmount_rootfs(task.dir / "rootfs")
        shutil.rmtree(task.dir, ignore_errors=True)
        with self._lock:
            self.tasks.pop((task.namespace, task.id), None)

    def exec(self, namespace: str, container_id: str, exec_id: str,
             process: dict[str, Any], stdio: dict[str, Any]) -> None:
        validate_id(exec_id, "exec id")
        task = self._get(namespace, container_id)
        _check_stdio(stdio)
        base = self.containers.get(namespace, container_id).spec.get("process", {})
        spec = bundles.merge_spec(base, process)
        if isinstance(process.get("env"), list):  # added to the container's, as docker exec
            spec["env"] = _merge_env(base.get("env") or [], process["env"])
        spec["terminal"] = bool(stdio.get("terminal"))
        if not spec.get("args"):
            raise errors.InvalidArgument("exec process $.args must be a non-empty list")
        task.call("exec", exec_id=exec_id, process=spec, stdio=stdio)
        self.events.publish(namespace, "/tasks/exec-added", "task_exec_added",
                            events_pb2.TaskExecAdded(container_id=container_id, exec_id=exec_id))

    def resize_pty(self, namespace: str, container_id: str, exec_id: str,
                   width: int, height: int) -> None:
        self._get(namespace, container_id).call("resize", exec_id=exec_id, width=width,
                                                height=height)

    def close_io(self, namespace: str, container_id: str, exec_id: str = "") -> None:
        self._get(namespace, container_id).call("close_io", exec_id=exec_id)

    def _running(self, task: Task, what: str) -> dict[str, Any]:
        state = task.call("state")
        if state["init"]["status"] != "running":
            raise errors.FailedPrecondition(
                f"cannot {what} task {task.id!r}: it is {state['init']['status']}, not running")
        return state

    def pause(self, namespace: str, container_id: str) -> None:
        task = self._get(namespace, container_id)
        self._running(task, "pause")
        task.runtime.pause(container_id)
        (task.dir / PAUSED_MARK).touch()
        self.events.publish(namespace, "/tasks/paused", "task_paused",
                            events_pb2.TaskPaused(container_id=container_id))

    def resume(self, namespace: str, container_id: str) -> None:
        task = self._get(namespace, container_id)
        if not task.paused:
            raise errors.FailedPrecondition(f"task {container_id!r} is not paused")
        task.runtime.resume(container_id)
        (task.dir / PAUSED_MARK).unlink(missing_ok=True)
        self.events.publish(namespace, "/tasks/resumed", "task_resumed",
                            events_pb2.TaskResumed(container_id=container_id))

    def pids(self, namespace: str, container_id: str) -> list[tuple[int, str]]:
        task = self._get(namespace, container_id)
        state = task.call("state")
        by_pid = {int(e["pid"]): e["exec_id"] for e in state["execs"].values() if e["pid"]}
        return [(pid, by_pid.get(pid, "")) for pid in task.runtime.ps(container_id)]

    def stats(self, namespace: str, container_id: str) -> dict[str, Any]:
        task = self._get(namespace, container_id)
        state = task.call("state")
        if state["init"]["status"] == "stopped":
            raise errors.FailedPrecondition(f"task {container_id!r} has exited: no stats")
        cg = state.get("cgroups") or {}
        if not cg:
            raise errors.FailedPrecondition(f"task {container_id!r}: its cgroup is unknown")
        figures: dict[str, Any] = cgroup.stats(cg)
        figures["cgroup"] = cg.get("memory") or cg.get("") or next(iter(cg.values()))
        return figures

    def update(self, namespace: str, container_id: str, resources: dict[str, Any]) -> None:
        task = self._get(namespace, container_id)
        if not resources:
            raise errors.InvalidArgument("update needs resources (OCI linux.resources as JSON)")
        task.runtime.update(container_id, resources)

    def get(self, namespace: str, container_id: str, exec_id: str = "") -> dict[str, Any]:
        task = self._get(namespace, container_id)
        return self._view(task, exec_id)

    def _view(self, task: Task, exec_id: str = "") -> dict[str, Any]:
        base = {"container_id": task.id, "runtime": task.runtime.binary, "bundle": str(task.dir)}
        if task.dead_exit is not None:
            if exec_id:
                raise errors.NotFound(f"exec {exec_id!r} of task {task.id!r} not found")
            return {**base, **task.dead_exit, "status": "stopped", "terminal": task.terminal,
                    "stdio": task.stdio}
        state = task.call("state")
        if exec_id:
            proc = state["execs"].get(exec_id)
            if proc is None:
                raise errors.NotFound(f"exec {exec_id!r} of task {task.id!r} not found")
        else:
            proc = state["init"]
            if proc["status"] == "running" and task.paused:
                proc["status"] = "paused"
        return {**base, **proc}

    def list(self, namespace: str, filters: list[str] | None = None) -> list[dict[str, Any]]:
        parsed = parse_filters(filters or [])
        with self._lock:
            tasks = [t for (ns, _), t in sorted(self.tasks.items()) if ns == namespace]
        out = []
        for task in tasks:
            try:
                view = self._view(task)
            except errors.ShimError:
                continue  # deleted meanwhile
            fields = {"id": task.id, "status": view["status"], "runtime": task.runtime.name}
            if matches(parsed, fields):
                out.append(view)
        return out


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait for a process that is not our child (a monitor) to exit."""
    if pid <= 0:
        return
    from lowrun.errors import LowrunError
    from lowrun.syscalls import pidfd_open

    try:
        fd = pidfd_open(pid)
    except LowrunError:
        return  # already gone
    try:
        if not select.select([fd], [], [], timeout)[0]:
            log.warning("monitor %d still runs %.0fs after its task was deleted", pid, timeout)
    finally:
        os.close(fd)


def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    merged = {e.split("=", 1)[0]: e for e in base}
    merged.update({e.split("=", 1)[0]: e for e in extra})
    return list(merged.values())


def _read_exit(task_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((task_dir / EXIT_NAME).read_text())
        return data
    except (OSError, ValueError):
        # the monitor died without recording an exit: the status is unknown
        return {"exec_id": "", "pid": 0, "exit_status": 255, "exited_at": 0,
                "oom_killed": False}


def _check_stdio(stdio: dict[str, Any]) -> None:
    stdin = stdio.get("stdin")
    if stdin:
        try:
            mode = os.stat(stdin).st_mode
        except OSError as exc:
            raise errors.InvalidArgument(f"stdin {stdin!r}: {exc.strerror}") from None
        if not stat.S_ISFIFO(mode):
            raise errors.InvalidArgument(f"stdin {stdin!r} must be a fifo (mkfifo)")
    for name in ("stdout", "stderr"):
        path = stdio.get(name)
        if path and not (os.path.isabs(path) and os.path.isdir(os.path.dirname(path))):
            raise errors.InvalidArgument(
                f"{name} {path!r} must be an absolute path in an existing directory")
    if stdio.get("terminal") and stdio.get("stderr"):
        raise errors.InvalidArgument("stderr must be empty with a terminal: the tty merges "
                                     "stderr into stdout")


def _check_log(cfg: dict[str, Any]) -> None:
    path = str(cfg["path"])
    if not os.path.isabs(path) or not os.path.isdir(os.path.dirname(path)):
        raise errors.InvalidArgument(
            f"log path {path!r} must be an absolute path in an existing directory")
    if int(cfg.get("max_size") or 0) < 0 or int(cfg.get("max_files") or 0) < 0:
        raise errors.InvalidArgument("log max_size and max_files must not be negative")
