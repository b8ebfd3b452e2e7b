"""Snapshots: the gRPC edge of the overlay snapshotter (published as ctx.shared["snapshots"])."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from shim.api.v1 import snapshots_pb2, snapshots_pb2_grpc
from shim.errors import InvalidArgument
from shim.services import ServiceContext
from shim.services.convert import label_update, mount_pb, snapshot_pb
from shim.services.events import matches, parse_filters
from shim.snapshots import OverlaySnapshotter

NAMES = ("", "overlayfs", "overlay")


def _check(snapshotter: str) -> None:
    if snapshotter not in NAMES:
        raise InvalidArgument(f"snapshotter {snapshotter!r} is not available (use overlayfs)")


class SnapshotsServicer(snapshots_pb2_grpc.SnapshotsServicer):  # type: ignore[misc]
    def __init__(self, sn: OverlaySnapshotter) -> None:
        self.sn = sn

    def Prepare(self, request: Any, context: grpc.ServicerContext) -> Any:
        _check(request.snapshotter)
        mounts = self.sn.prepare(request.key, request.parent, dict(request.labels))
        return snapshots_pb2.PrepareSnapshotResponse(mounts=[mount_pb(m) for m in mounts])

    def View(self, request: Any, context: grpc.ServicerContext) -> Any:
        _check(request.snapshotter)
        mounts = self.sn.view(request.key, request.parent, dict(request.labels))
        return snapshots_pb2.ViewSnapshotResponse(mounts=[mount_pb(m) for m in mounts])

    def Mounts(self, request: Any, context: grpc.ServicerContext) -> Any:
        _check(request.snapshotter)
        return snapshots_pb2.SnapshotMountsResponse(
            mounts=[mount_pb(m) for m in self.sn.mounts(request.key)])

    def Commit(self, request: Any, context: grpc.ServicerContext) -> Any:
        _check(request.snapshotter)
        self.sn.commit(request.name, request.key, dict(request.labels))
        return empty_pb2.Empty()

    def Remove(self, request: Any, context: grpc.ServicerContext) -> Any:
        _check(request.snapshotter)
        self.sn.remove(request.key)
        return empty_pb2.Empty()

    def Stat(self, request: Any, context: grpc.ServicerContext) -> Any:
        _check(request.snapshotter)
        return snapshots_pb2.StatSnapshotResponse(info=snapshot_pb(self.sn.stat(request.key)))

    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        _check(request.snapshotter)
        labels, replace = label_update(self.sn.stat(request.info.name).labels,
                                       dict(request.info.labels), list(request.update_mask))
        info = self.sn.update(request.info.name, labels, replace=replace)
        return snapshots_pb2.UpdateSnapshotResponse(info=snapshot_pb(info))

    def List(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        _check(request.snapshotter)
        filters = parse_filters(list(request.filters))
        out = []
        for info in self.sn.list():
            fields = {"name": info.name, "parent": info.parent, "kind": info.kind.value}
            fields.update({f"labels.{k}": v for k, v in info.labels.items()})
            if matches(filters, fields):
                out.append(snapshot_pb(info))
        for i in range(0, len(out), 100):
            yield snapshots_pb2.ListSnapshotsResponse(info=out[i:i + 100])

    def Usage(self, request: Any, context: grpc.ServicerContext) -> Any:
        _check(request.snapshotter)
        usage = self.sn.usage(request.key)
        return snapshots_pb2.SnapshotUsageResponse(size=usage.size, inodes=usage.inodes)


def register(server: grpc.Server, ctx: ServiceContext) -> None:
    sn = OverlaySnapshotter(ctx.root)
    ctx.shared["snapshots"] = sn
    snapshots_pb2_grpc.add_SnapshotsServicer_to_server(SnapshotsServicer(sn), server)
