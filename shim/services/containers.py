"""Containers: the metadata of what to run, kept in `shim.metadata.ContainerStore`.

`ContainerService` is the local implementation (in-process callers use it directly);
`ContainersServicer` is its gRPC edge. A container's spec is merged onto the default
spec of `shim.bundle` at creation, so callers may send only what differs.

Deleting a container also removes the rootfs snapshot that `prepare_container_rootfs`
made for it (key `NAMESPACE/ID`, label `berth.container=ID`): the container record is
what keeps that snapshot alive (prune keeps every active snapshot), so the record's end
is the one place every client's delete passes through. Snapshots the caller prepared
under keys of its own are left to it.
"""

from __future__ import annotations

import builtins
import json
import logging
from typing import Any, Protocol

import grpc

from shim import namespaces
from shim.api.v1 import containers_pb2, containers_pb2_grpc, events_pb2
from shim.bundle import check_spec, default_spec, merge_spec
from shim.errors import FailedPrecondition, InvalidArgument, NotFound
from shim.images.runconfig import LABEL_CONTAINER, snapshot_key
from shim.metadata import ContainerRecord, ContainerStore, validate_id
from shim.services import ServiceContext
from shim.services.events import EventBus, matches, parse_filters
from shim.snapshots import OverlaySnapshotter

log = logging.getLogger(__name__)


class TaskLookup(Protocol):
    def has_task(self, namespace: str, container_id: str) -> bool: ...


def _fields(rec: ContainerRecord) -> dict[str, str]:
    fields = {"id": rec.id, "image": rec.image, "runtime": rec.runtime,
              "snapshot_key": rec.snapshot_key}
    fields.update({f"labels.{k}": v for k, v in rec.labels.items()})
    return fields


def parse_spec(raw: bytes, what: str = "spec") -> dict[str, Any]:
    if not raw:
        return {}
    try:
        spec = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise InvalidArgument(f"{what} must be a JSON object (an OCI runtime spec)")
    return spec


class ContainerService:
    def __init__(self, store: ContainerStore, events: EventBus, ctx: ServiceContext) -> None:
        self.store = store
        self.events = events
        self.ctx = ctx

    def create(self, namespace: str, record: ContainerRecord) -> ContainerRecord:
        validate_id(record.id)
        record.spec = merge_spec(default_spec(hostname=record.id[:12]), record.spec)
        check_spec(record.spec)
        created = self.store.create(namespace, record)
        self.events.publish(namespace, "/containers/create", "container_create",
                            events_pb2.ContainerCreate(id=record.id, image=record.image,
                                                       runtime=record.runtime))
        return created

    def get(self, namespace: str, container_id: str) -> ContainerRecord:
        return self.store.get(namespace, container_id)

    def list(self, namespace: str, filters: builtins.list[str] | None = None
             ) -> builtins.list[ContainerRecord]:
        parsed = parse_filters(filters or [])
        return [r for r in self.store.list(namespace) if matches(parsed, _fields(r))]

    def update(self, namespace: str, record: ContainerRecord,
               mask: builtins.list[str]) -> ContainerRecord:
        current = self.store.get(namespace, record.id)
        allowed = {"labels", "image", "spec", "snapshot_key", "runtime"}
        for name in mask or ["labels", "image"]:
            if name not in allowed:
                raise InvalidArgument(f"update_mask field {name!r} is not one of {sorted(allowed)}")
            if name == "spec":
                spec = merge_spec(default_spec(hostname=record.id[:12]), record.spec)
                check_spec(spec)
                current.spec = spec
            else:
                setattr(current, name, getattr(record, name))
        updated = self.store.update(namespace, current)
        self.events.publish(namespace, "/containers/update", "container_update",
                            events_pb2.ContainerUpdate(id=current.id, image=current.image,
                                                       labels=current.labels))
        return updated

    def delete(self, namespace: str, container_id: str) -> None:
        record = self.store.get(namespace, container_id)
        tasks = self.ctx.shared.get("tasks")
        if tasks is not None and tasks.has_task(namespace, container_id):  # type: ignore[attr-defined]
            raise FailedPrecondition(
                f"container {container_id!r} in namespace {namespace!r} has a task: "
                "delete the task first (kill it if it runs)"
            )
        self._release_rootfs(namespace, record)
        self.store.delete(namespace, container_id)
        self.events.publish(namespace, "/containers/delete", "container_delete",
                            events_pb2.ContainerDelete(id=container_id))

    def _release_rootfs(self, namespace: str, record: ContainerRecord) -> None:
        """Remove the snapshot prepared for this container's rootfs, if it is one.

        Before the record goes, so that a snapshot that cannot be removed leaves the
        container in place to delete again, not an orphan nothing would collect."""
        key = record.snapshot_key
        snapshots = self.ctx.shared.get("snapshots")
        if not key or key != snapshot_key(namespace, record.id) \
                or not isinstance(snapshots, OverlaySnapshotter):
            return
        try:
            if snapshots.stat(key).labels.get(LABEL_CONTAINER) != record.id:
                return
            snapshots.remove(key)
        except NotFound:
            return
        log.debug("removed snapshot %s of container %s", key, record.id)


def to_proto(rec: ContainerRecord) -> containers_pb2.Container:
    msg = containers_pb2.Container(
        id=rec.id, image=rec.image, spec=json.dumps(rec.spec).encode(),
        snapshot_key=rec.snapshot_key, snapshotter=rec.snapshotter,
        runtime=containers_pb2.Runtime(name=rec.runtime), labels=rec.labels,
    )
    msg.created_at.FromNanoseconds(rec.created_at)
    msg.updated_at.FromNanoseconds(rec.updated_at)
    return msg


def from_proto(msg: containers_pb2.Container) -> ContainerRecord:
    return ContainerRecord(
        id=msg.id, spec=parse_spec(msg.spec), image=msg.image, snapshot_key=msg.snapshot_key,
        snapshotter=msg.snapshotter, runtime=msg.runtime.name, labels=dict(msg.labels),
    )


class ContainersServicer(containers_pb2_grpc.ContainersServicer):  # type: ignore[misc]
    def __init__(self, service: ContainerService) -> None:
        self.service = service

    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        rec = self.service.create(ns, from_proto(request.container))
        return containers_pb2.CreateContainerResponse(container=to_proto(rec))

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        return containers_pb2.GetContainerResponse(
            container=to_proto(self.service.get(ns, request.id)))

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        recs = self.service.list(ns, list(request.filters))
        return containers_pb2.ListContainersResponse(containers=[to_proto(r) for r in recs])

    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        rec = self.service.update(ns, from_proto(request.container), list(request.update_mask))
        return containers_pb2.UpdateContainerResponse(container=to_proto(rec))

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        self.service.delete(ns, request.id)
        return containers_pb2.DeleteContainerResponse()


def register(server: grpc.Server, ctx: ServiceContext) -> None:
    bus = ctx.shared["events"]
    assert isinstance(bus, EventBus)
    service = ContainerService(ContainerStore(ctx.root), bus, ctx)
    ctx.shared["containers"] = service
    containers_pb2_grpc.add_ContainersServicer_to_server(ContainersServicer(service), server)
