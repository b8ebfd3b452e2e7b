"""The verbs on an existing container: state, start, kill, delete, pause, resume, update.

Each verb checks the container's status first and refuses, with `InvalidState`, what
the OCI lifecycle does not allow in that status.
"""

from __future__ import annotations

import os
import select
import sys
import time

from lowrun import cgroups, hooks, namespaces, signals, syscalls
from lowrun.errors import InvalidState, LowrunError, suppress
from lowrun.state import (
    CREATED,
    PAUSED,
    RUNNING,
    STOPPED,
    ContainerState,
    StateStore,
    process_start_time,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STOP_TIMEOUT = 10.0


def cgroup_of(state: ContainerState) -> cgroups.CgroupManager:
    return cgroups.load_manager(state.cgroup)


def init_alive(state: ContainerState) -> bool:
    return state.pid > 0 and process_start_time(state.pid) == state.pid_start


def status_of(store: StateStore, state: ContainerState) -> str:
    if not init_alive(state):
        return STOPPED
    if os.path.exists(store.fifo(state.id)):
        return CREATED
    with suppress(Exception):
        if cgroup_of(state).frozen():
            return PAUSED
    return RUNNING


def state_document(store: StateStore, state: ContainerState) -> dict[str, Any]:
    """The OCI state of a container, as `runc state` prints it."""
    status = status_of(store, state)
    doc: dict[str, Any] = {
        "ociVersion": state.config.get("ociVersion", ""),
        "id": state.id,
        "pid": 0 if status == STOPPED else state.pid,
        "status": status,
        "bundle": state.bundle,
        "rootfs": state.rootfs,
        "created": state.created,
        "owner": state.owner,
    }
    if state.annotations:
        doc["annotations"] = state.annotations
    return doc


def start(store: StateStore, container_id: str) -> None:
    state = store.load(container_id)
    status = status_of(store, state)
    if status != CREATED:
        raise InvalidState(f"cannot start a container that is {status}")
    fifo = store.fifo(container_id)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        data = _await_fifo(fd, state)
    finally:
        os.close(fd)
    if data != b"0":
        raise LowrunError("the container's init exited before it could start (see its stderr)")
    with suppress(FileNotFoundError):
        os.unlink(fifo)
    try:
        hooks.run_phase(state.config, "poststart",
                        hooks.state_for(state.config, state.id, RUNNING, state.pid, state.bundle))
    except LowrunError as exc:
        print(f"lowrun: warning: {exc}", file=sys.stderr)


def _await_fifo(fd: int, state: ContainerState) -> bytes:
    """Read the init's byte from the exec fifo, giving up if the init dies meanwhile."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        if poller.poll(100):
            return os.read(fd, 1)
        if not init_alive(state):
            return b""


def parse_signal(value: str) -> int:
    text = value.strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < signals.NSIG:
            return number
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        if name in signals.NUMBERS:
            return signals.NUMBERS[name]
    raise LowrunError(f"invalid signal {value!r}")


def kill(store: StateStore, container_id: str, sig: int, all_processes: bool = False) -> None:
    state = store.load(container_id)
    status = status_of(store, state)
    if status == STOPPED:
        raise InvalidState("container not running")
    if all_processes:
        _signal_all(cgroup_of(state), sig)
        return
    pidfd = syscalls.pidfd_open(state.pid)
    try:
        if process_start_time(state.pid) != state.pid_start:
            raise InvalidState("container not running")
        syscalls.pidfd_send_signal(pidfd, sig)
    finally:
        os.close(pidfd)
    if status == PAUSED and sig == signals.SIGKILL:
        # A frozen task does not act on SIGKILL until it is thawed; runc thaws here too,
        # and containerd's `task kill -s SIGKILL` of a paused task waits for the exit.
        with suppress(Exception):
            cgroup_of(state).thaw()


def _signal_all(cgroup: cgroups.CgroupManager, sig: int) -> None:
    """runc's `kill --all`: freeze so that no process forks past the listing, signal every
    pid of the cgroup, thaw. The thaw also lets a paused container act on the signal (runc
    resumes it in the same way); without it containerd's `delete --force` of a paused task
    waits forever."""
    with suppress(Exception):
        cgroup.freeze()
    try:
        for pid in cgroup.pids():
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
    finally:
        with suppress(Exception):
            cgroup.thaw()


def delete(store: StateStore, container_id: str, force: bool = False) -> None:
    state = store.load(container_id)
    status = status_of(store, state)
    if status in (RUNNING, PAUSED) and not force:
        raise InvalidState(f"cannot delete container {container_id} that is not stopped: {status}")
    if status != STOPPED:
        _stop(state, status)
    cgroup = cgroup_of(state)
    cgroup.destroy()
    store.remove(container_id)
    try:
        hooks.run_phase(state.config, "poststop",
                        hooks.state_for(state.config, state.id, STOPPED, 0, state.bundle))
    except LowrunError as exc:
        print(f"lowrun: warning: {exc}", file=sys.stderr)


def _stop(state: ContainerState, status: str) -> None:
    """SIGKILL the init (and, without a pid namespace of its own, every process in its cgroup)."""
    cgroup = cgroup_of(state)
    if status == PAUSED:
        with suppress(Exception):
            cgroup.thaw()
    own_pidns = "pid" in namespaces.plan(state.config).new
    targets = [state.pid] if own_pidns else [state.pid, *cgroup.pids()]
    for pid in targets:
        with suppress(ProcessLookupError):
            os.kill(pid, signals.SIGKILL)
    _wait_gone(state)
    deadline = time.monotonic() + STOP_TIMEOUT
    while cgroup.pids() and time.monotonic() < deadline:
        for pid in cgroup.pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signals.SIGKILL)
        time.sleep(0.01)


def _wait_gone(state: ContainerState) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    while init_alive(state):
        if time.monotonic() > deadline:
            raise LowrunError(f"container {state.id}: init {state.pid} did not die")
        with suppress(ChildProcessError):
            os.waitpid(state.pid, os.WNOHANG)
        time.sleep(0.005)


def pause(store: StateStore, container_id: str) -> None:
    state = store.load(container_id)
    status = status_of(store, state)
    if status != RUNNING:
        raise InvalidState(f"cannot pause a container that is {status}")
    cgroup_of(state).freeze()


def resume(store: StateStore, container_id: str) -> None:
    state = store.load(container_id)
    status = status_of(store, state)
    if status != PAUSED:
        raise InvalidState(f"cannot resume a container that is {status}")
    cgroup_of(state).thaw()


def update(store: StateStore, container_id: str, resources: dict[str, Any]) -> None:
    state = store.load(container_id)
    status = status_of(store, state)
    if status == STOPPED:
        raise InvalidState("cannot update a stopped container")
    cgroup_of(state).set(resources)
    linux = state.config.setdefault("linux", {})
    current = linux.setdefault("resources", {})
    for key, value in resources.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            current[key].update(value)
        else:
            current[key] = value
    store.save(state)


def stats(store: StateStore, container_id: str) -> dict[str, Any]:
    state = store.load(container_id)
    if status_of(store, state) == STOPPED:
        raise InvalidState("container not running")
    return cgroup_of(state).stats()
