"""The Python client of shimd, for gRPC users to embed (berthd, shimctl, tests).

    with Client("/run/berth-shim/shim.sock", namespace="default") as c:
        c.create_container("web", spec={"process": {"args": ["nginx"]}})
        c.create_task("web", rootfs=[Mount("bind", "/srv/rootfs")], log=LogConfig(path))
        c.start("web"); status = c.wait("web").exit_status; c.delete_task("web")

Every call is scoped by the client's namespace; `with_namespace()` gives a client on
the same channel for another one. gRPC statuses come back as the exceptions of
`shim.errors` (NotFound, AlreadyExists, ...), with the server's message.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shim import namespaces
from shim.api.v1 import (
    containers_pb2,
    containers_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    version_pb2,
    version_pb2_grpc,
)
from shim.errors import from_rpc_error, from_status, translate_rpc_errors

DEFAULT_ADDRESS = "/run/berth-shim/shim.sock"

STATUS_NAMES = {v: k.lower() for k, v in tasks_pb2.Status.items()}


@dataclass
class Mount:
    type: str
    source: str
    options: list[str] = field(default_factory=list)
    target: str = ""

    def proto(self) -> tasks_pb2.Mount:
        return tasks_pb2.Mount(type=self.type, source=self.source, target=self.target,
                               options=self.options)


@dataclass
class LogConfig:
    """A json-file log in docker's format, rotated at max_size bytes keeping max_files."""

    path: str
    max_size: int = 0
    max_files: int = 1


@dataclass
class Stdio:
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False

    def proto(self) -> tasks_pb2.Stdio:
        return tasks_pb2.Stdio(stdin=self.stdin, stdout=self.stdout, stderr=self.stderr,
                               terminal=self.terminal)


@dataclass
class ExitStatus:
    exit_status: int
    exited_at_ns: int
    oom_killed: bool = False


class Client:
    def __init__(self, address: str = DEFAULT_ADDRESS, namespace: str = namespaces.DEFAULT,
                 channel: grpc.Channel | None = None, timeout: float | None = None) -> None:
        self.address = address
        self.namespace = namespaces.validate(namespace)
        self.timeout = timeout
        self._own_channel = channel is None
        self.channel = channel or grpc.insecure_channel(
            f"unix:{address}", options=[("grpc.enable_retries", 0)]
        )
        self.containers = containers_pb2_grpc.ContainersStub(self.channel)
        self.tasks = tasks_pb2_grpc.TasksStub(self.channel)
        self.events = events_pb2_grpc.EventsStub(self.channel)
        self._version = version_pb2_grpc.VersionStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def with_namespace(self, namespace: str) -> Client:
        return Client(self.address, namespace, channel=self.channel, timeout=self.timeout)

    def close(self) -> None:
        if self._own_channel:
            self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _md(self) -> tuple[tuple[str, str], ...]:
        return namespaces.metadata(self.namespace)

    # ---- health and version -------------------------------------------------------

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until shimd answers (or raise Unavailable)."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            from shim.errors import Unavailable

            raise Unavailable(f"shimd does not answer on {self.address} "
                              f"within {timeout}s") from None

    @translate_rpc_errors
    def health(self) -> str:
        resp = self._health.Check(health_pb2.HealthCheckRequest(), timeout=self.timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))

    @translate_rpc_errors
    def version(self) -> version_pb2.VersionResponse:
        return self._version.Version(version_pb2.VersionRequest(), timeout=self.timeout)  # type: ignore[no-any-return]

    # ---- containers ---------------------------------------------------------------

    @translate_rpc_errors
    def create_container(
        self, container_id: str, spec: dict[str, Any] | None = None, *, image: str = "",
        runtime: str = "", labels: dict[str, str] | None = None, snapshot_key: str = "",
        snapshotter: str = "",
    ) -> containers_pb2.Container:
        """Create a container; `spec` is merged onto shimd's default spec."""
        msg = containers_pb2.Container(
            id=container_id, image=image, spec=json.dumps(spec or {}).encode(),
            snapshot_key=snapshot_key, snapshotter=snapshotter,
            runtime=containers_pb2.Runtime(name=runtime), labels=labels or {},
        )
        return self.containers.Create(containers_pb2.CreateContainerRequest(container=msg),  # type: ignore[no-any-return]
                                      metadata=self._md, timeout=self.timeout).container

    @translate_rpc_errors
    def get_container(self, container_id: str) -> containers_pb2.Container:
        return self.containers.Get(containers_pb2.GetContainerRequest(id=container_id),  # type: ignore[no-any-return]
                                   metadata=self._md, timeout=self.timeout).container

    @translate_rpc_errors
    def list_containers(self, *filters: str) -> list[containers_pb2.Container]:
        resp = self.containers.List(containers_pb2.ListContainersRequest(filters=filters),
                                    metadata=self._md, timeout=self.timeout)
        return list(resp.containers)

    @translate_rpc_errors
    def update_container(self, container_id: str, *, labels: dict[str, str] | None = None,
                         image: str | None = None) -> containers_pb2.Container:
        mask = []
        msg = containers_pb2.Container(id=container_id)
        if labels is not None:
            msg.labels.update(labels)
            mask.append("labels")
        if image is not None:
            msg.image = image
            mask.append("image")
        return self.containers.Update(  # type: ignore[no-any-return]
            containers_pb2.UpdateContainerRequest(container=msg, update_mask=mask),
            metadata=self._md, timeout=self.timeout).container

    @translate_rpc_errors
    def delete_container(self, container_id: str) -> None:
        self.containers.Delete(containers_pb2.DeleteContainerRequest(id=container_id),
                               metadata=self._md, timeout=self.timeout)

    # ---- tasks --------------------------------------------------------------------

    @translate_rpc_errors
    def create_task(self, container_id: str, *, rootfs: list[Mount] | None = None,
                    stdio: Stdio | None = None, log: LogConfig | None = None) -> int:
        req = tasks_pb2.CreateTaskRequest(
            container_id=container_id, rootfs=[m.proto() for m in rootfs or []],
            stdio=(stdio or Stdio()).proto(),
        )
        if log is not None:
            req.log.CopyFrom(tasks_pb2.LogConfig(path=log.path, max_size=log.max_size,
                                                 max_files=log.max_files))
        return int(self.tasks.Create(req, metadata=self._md, timeout=self.timeout).pid)

    @translate_rpc_errors
    def start(self, container_id: str, exec_id: str = "") -> int:
        return int(self.tasks.Start(tasks_pb2.StartRequest(container_id=container_id,
                                                           exec_id=exec_id),
                                    metadata=self._md, timeout=self.timeout).pid)

    @translate_rpc_errors
    def kill(self, container_id: str, signal: int = 15, *, exec_id: str = "",
             all: bool = False) -> None:
        self.tasks.Kill(tasks_pb2.KillRequest(container_id=container_id, exec_id=exec_id,
                                              signal=signal, all=all),
                        metadata=self._md, timeout=self.timeout)

    @translate_rpc_errors
    def wait(self, container_id: str, exec_id: str = "",
             timeout: float | None = None) -> ExitStatus:
        resp = self.tasks.Wait(tasks_pb2.WaitRequest(container_id=container_id,
                                                     exec_id=exec_id),
                               metadata=self._md, timeout=timeout)
        return ExitStatus(resp.exit_status, resp.exited_at.ToNanoseconds(), resp.oom_killed)

    @translate_rpc_errors
    def delete_task(self, container_id: str, exec_id: str = "",
                    force: bool = False) -> tasks_pb2.DeleteResponse:
        return self.tasks.Delete(tasks_pb2.DeleteTaskRequest(  # type: ignore[no-any-return]
            container_id=container_id, exec_id=exec_id, force=force),
            metadata=self._md, timeout=self.timeout)

    @translate_rpc_errors
    def get_task(self, container_id: str, exec_id: str = "") -> tasks_pb2.Process:
        return self.tasks.Get(tasks_pb2.GetRequest(container_id=container_id,  # type: ignore[no-any-return]
                                                   exec_id=exec_id),
                              metadata=self._md, timeout=self.timeout).process

    @translate_rpc_errors
    def list_tasks(self, *filters: str) -> list[tasks_pb2.Process]:
        return list(self.tasks.List(tasks_pb2.ListTasksRequest(filters=filters),
                                    metadata=self._md, timeout=self.timeout).tasks)

    @translate_rpc_errors
    def exec(self, container_id: str, exec_id: str, process: dict[str, Any],
             stdio: Stdio | None = None) -> None:
        """Add an exec process (start it with start(container_id, exec_id)); `process`
        is an OCI process object merged onto the container's own."""
        self.tasks.Exec(tasks_pb2.ExecProcessRequest(
            container_id=container_id, exec_id=exec_id, spec=json.dumps(process).encode(),
            stdio=(stdio or Stdio()).proto()), metadata=self._md, timeout=self.timeout)

    @translate_rpc_errors
    def resize_pty(self, container_id: str, width: int, height: int,
                   exec_id: str = "") -> None:
        self.tasks.ResizePty(tasks_pb2.ResizePtyRequest(
            container_id=container_id, exec_id=exec_id, width=width, height=height),
            metadata=self._md, timeout=self.timeout)

    @translate_rpc_errors
    def close_io(self, container_id: str, exec_id: str = "") -> None:
        self.tasks.CloseIO(tasks_pb2.CloseIORequest(container_id=container_id,
                                                    exec_id=exec_id, stdin=True),
                           metadata=self._md, timeout=self.timeout)

    @translate_rpc_errors
    def pause(self, container_id: str) -> None:
        self.tasks.Pause(tasks_pb2.PauseTaskRequest(container_id=container_id),
                         metadata=self._md, timeout=self.timeout)

    @translate_rpc_errors
    def resume(self, container_id: str) -> None:
        self.tasks.Resume(tasks_pb2.ResumeTaskRequest(container_id=container_id),
                          metadata=self._md, timeout=self.timeout)

    @translate_rpc_errors
    def pids(self, container_id: str) -> list[tasks_pb2.ProcessInfo]:
        return list(self.tasks.ListPids(tasks_pb2.ListPidsRequest(container_id=container_id),
                                        metadata=self._md, timeout=self.timeout).processes)

    @translate_rpc_errors
    def stats(self, container_id: str) -> tasks_pb2.Metrics:
        return self.tasks.Stats(tasks_pb2.StatsRequest(container_id=container_id),  # type: ignore[no-any-return]
                                metadata=self._md, timeout=self.timeout).metrics

    @translate_rpc_errors
    def update_task(self, container_id: str, resources: dict[str, Any]) -> None:
        """Apply OCI linux.resources (e.g. {"memory": {"limit": N}}) to a running task."""
        self.tasks.Update(tasks_pb2.UpdateTaskRequest(
            container_id=container_id, resources=json.dumps(resources).encode()),
            metadata=self._md, timeout=self.timeout)

    # ---- events -------------------------------------------------------------------

    def subscribe(self, *filters: str, replay: bool = False) -> EventStream:
        """Subscribe to events; returns once the subscription is in place, so every
        event published afterwards is seen (and, with `replay`, the matching events of
        shimd's backlog first). Iterate it, or next(timeout); cancel() ends it."""
        call = self.events.Subscribe(
            events_pb2.SubscribeRequest(filters=filters, replay=replay), metadata=self._md)
        try:
            metadata = dict(call.initial_metadata() or ())
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        if metadata.get("berth-subscribed") != "1":  # the call ended instead
            raise from_status(call.code(), call.details() or "subscription refused")
        return EventStream(call)


class EventStream:
    """Events of one subscription, read by a thread of its own into a queue."""

    _END = object()

    def __init__(self, call: Any) -> None:
        self.call = call
        self._queue: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name="shim-events").start()

    def _read(self) -> None:
        try:
            for envelope in self.call:
                self._queue.put(envelope)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self._queue.put(from_rpc_error(exc))
        self._queue.put(self._END)

    def next(self, timeout: float | None = 10.0) -> events_pb2.Envelope:
        """The next event; TimeoutError when none comes within `timeout` seconds,
        StopIteration when the stream ended."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no event within {timeout}s") from None
        if item is self._END:
            self._queue.put(item)
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        envelope: events_pb2.Envelope = item
        return envelope

    def __iter__(self) -> Iterator[events_pb2.Envelope]:
        while True:
            try:
                yield self.next(timeout=None)
            except StopIteration:
                return

    def cancel(self) -> None:
        self.call.cancel()
