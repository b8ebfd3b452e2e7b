"""The content, image and snapshot services seen through gRPC, with the local APIs' shapes.

`RemoteContent` satisfies `ContentAPI` and `RemoteImages` satisfies `ImageStoreAPI`, so
pull, push, import, load and save run unchanged in a client (shimctl, berthd) while the
bytes land in shimd's stores. `ImagesClient` bundles them with Unpack, Prune and
`prepare_container_rootfs` (the gRPC twin of `shim.images.runconfig`).
"""

from __future__ import annotations

import builtins
import contextlib
import queue
from collections.abc import Iterator
from typing import Any

import grpc

from shim import namespaces
from shim.api.v1 import (
    content_pb2,
    content_pb2_grpc,
    images_pb2,
    images_pb2_grpc,
    snapshots_pb2,
    snapshots_pb2_grpc,
)
from shim.content.api import write_blob
from shim.content.store import Info, IngestStatus
from shim.errors import AlreadyExists, NotFound, from_rpc_error, translate_rpc_errors
from shim.images.gc import PruneResult
from shim.images.oci import DEFAULT_PLATFORM, Platform
from shim.images.reference import parse_reference
from shim.images.resolve import read_config, resolve_manifest
from shim.images.runconfig import (
    LABEL_CONTAINER,
    LABEL_IMAGE,
    ContainerRootfs,
    RunConfig,
    snapshot_key,
)
from shim.images.store import Image
from shim.services.convert import (
    image_from,
    image_pb,
    info_from,
    info_pb,
    ingest_from,
    mount_from,
    snapshot_from,
)
from shim.snapshots import Mount, SnapshotInfo

CHUNK = 1 << 20


class RemoteWriter:
    """One Write stream: STAT on open, WRITE per chunk, COMMIT at the end."""

    def __init__(self, stub: Any, md: tuple[tuple[str, str], ...], ref: str, total: int,
                 expected: str) -> None:
        self.ref = ref
        self._requests: queue.Queue[Any] = queue.Queue()
        self._responses = stub.Write(iter(self._requests.get, None), metadata=md)
        self._open = True
        resp = self._call(content_pb2.WriteContentRequest(
            action=content_pb2.STAT, ref=ref, total=total, expected=expected))
        self.offset: int = resp.offset
        self.total = total

    def _call(self, req: Any) -> Any:
        self._requests.put(req)
        try:
            return next(self._responses)
        except grpc.RpcError as exc:
            self._open = False
            raise from_rpc_error(exc) from None

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        for i in range(0, len(view), CHUNK):
            resp = self._call(content_pb2.WriteContentRequest(
                action=content_pb2.WRITE, offset=self.offset, data=bytes(view[i:i + CHUNK])))
            self.offset = resp.offset
        return len(data)

    def truncate(self, size: int = 0) -> None:
        if size != 0:
            raise ValueError("a remote ingest can only start over (truncate to 0)")
        resp = self._call(content_pb2.WriteContentRequest(action=content_pb2.WRITE, offset=0))
        self.offset = resp.offset

    def commit(self, size: int = 0, expected: str = "",
               labels: dict[str, str] | None = None) -> str:
        resp = self._call(content_pb2.WriteContentRequest(
            action=content_pb2.COMMIT, offset=self.offset, total=size or self.total,
            expected=expected, labels=labels or {}))
        self.close()
        return str(resp.digest)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._requests.put(None)
            for _ in self._responses:
                pass

    def __enter__(self) -> RemoteWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(grpc.RpcError):
            self.close()


class RemoteContent:
    def __init__(self, channel: grpc.Channel, namespace: str = namespaces.DEFAULT) -> None:
        self.stub = content_pb2_grpc.ContentStub(channel)
        self.md = namespaces.metadata(namespace)

    @translate_rpc_errors
    def info(self, digest: str) -> Info:
        resp = self.stub.Info(content_pb2.ContentInfoRequest(digest=digest), metadata=self.md)
        return info_from(resp.info)

    def exists(self, digest: str) -> bool:
        try:
            self.info(digest)
        except NotFound:
            return False
        return True

    @translate_rpc_errors
    def list(self, *filters: str) -> list[Info]:
        out: list[Info] = []
        for resp in self.stub.List(content_pb2.ListContentRequest(filters=list(filters)),
                                   metadata=self.md):
            out.extend(info_from(i) for i in resp.info)
        return out

    @translate_rpc_errors
    def update(self, digest: str, labels: dict[str, str], replace: bool = False) -> Info:
        mask = ["labels"] if replace else [f"labels.{k}" for k in labels]
        resp = self.stub.Update(content_pb2.UpdateContentRequest(
            info=info_pb(Info(digest, 0, 0, 0, labels)), update_mask=mask), metadata=self.md)
        return info_from(resp.info)

    @translate_rpc_errors
    def delete(self, digest: str) -> None:
        self.stub.Delete(content_pb2.DeleteContentRequest(digest=digest), metadata=self.md)

    def read(self, digest: str, offset: int = 0, size: int = 0,
             chunk: int = CHUNK) -> Iterator[bytes]:
        try:
            for resp in self.stub.Read(content_pb2.ReadContentRequest(
                    digest=digest, offset=offset, size=size), metadata=self.md):
                yield resp.data
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def read_bytes(self, digest: str) -> bytes:
        return b"".join(self.read(digest))

    @translate_rpc_errors
    def status(self, ref: str) -> IngestStatus:
        resp = self.stub.Status(content_pb2.IngestStatusRequest(ref=ref), metadata=self.md)
        return ingest_from(resp.status)

    @translate_rpc_errors
    def list_statuses(self) -> builtins.list[IngestStatus]:
        resp = self.stub.ListStatuses(content_pb2.ListIngestsRequest(), metadata=self.md)
        return [ingest_from(s) for s in resp.statuses]

    @translate_rpc_errors
    def abort(self, ref: str) -> None:
        self.stub.Abort(content_pb2.AbortIngestRequest(ref=ref), metadata=self.md)

    def writer(self, ref: str, total: int = 0, expected: str = "") -> RemoteWriter:
        return RemoteWriter(self.stub, self.md, ref, total, expected)

    def write_blob(self, data: bytes, expected: str = "", ref: str = "",
                   labels: dict[str, str] | None = None) -> str:
        return write_blob(self, data, expected, ref, labels)


class RemoteImages:
    """The image store over gRPC; `namespace` arguments pick the call's namespace."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = images_pb2_grpc.ImagesStub(channel)

    @translate_rpc_errors
    def get(self, namespace: str, name: str) -> Image:
        resp = self.stub.Get(images_pb2.GetImageRequest(name=name),
                             metadata=namespaces.metadata(namespace))
        return image_from(resp.image)

    @translate_rpc_errors
    def list(self, namespace: str, *filters: str) -> list[Image]:
        resp = self.stub.List(images_pb2.ListImagesRequest(filters=list(filters)),
                              metadata=namespaces.metadata(namespace))
        return [image_from(i) for i in resp.images]

    @translate_rpc_errors
    def create(self, namespace: str, image: Image) -> Image:
        resp = self.stub.Create(images_pb2.CreateImageRequest(image=image_pb(image)),
                                metadata=namespaces.metadata(namespace))
        return image_from(resp.image)

    @translate_rpc_errors
    def update(self, namespace: str, image: Image) -> Image:
        resp = self.stub.Update(images_pb2.UpdateImageRequest(image=image_pb(image)),
                                metadata=namespaces.metadata(namespace))
        return image_from(resp.image)

    def put(self, namespace: str, image: Image) -> Image:
        try:
            return self.create(namespace, image)
        except AlreadyExists:
            return self.update(namespace, image)

    @translate_rpc_errors
    def delete(self, namespace: str, name: str) -> None:
        self.stub.Delete(images_pb2.DeleteImageRequest(name=name),
                         metadata=namespaces.metadata(namespace))

    @translate_rpc_errors
    def unpack(self, namespace: str, name: str) -> str:
        resp = self.stub.Unpack(images_pb2.UnpackImageRequest(name=name),
                                metadata=namespaces.metadata(namespace))
        return str(resp.chain_id)

    @translate_rpc_errors
    def prune(self, grace: float = -1, dry_run: bool = False) -> PruneResult:
        resp = self.stub.Prune(images_pb2.PruneRequest(grace_seconds=grace, dry_run=dry_run))
        return PruneResult(list(resp.blobs), list(resp.snapshots), resp.bytes_freed)


class RemoteSnapshots:
    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = snapshots_pb2_grpc.SnapshotsStub(channel)

    @translate_rpc_errors
    def prepare(self, key: str, parent: str = "",
                labels: dict[str, str] | None = None) -> list[Mount]:
        resp = self.stub.Prepare(snapshots_pb2.PrepareSnapshotRequest(
            key=key, parent=parent, labels=labels or {}))
        return [mount_from(m) for m in resp.mounts]

    @translate_rpc_errors
    def mounts(self, key: str) -> list[Mount]:
        resp = self.stub.Mounts(snapshots_pb2.SnapshotMountsRequest(key=key))
        return [mount_from(m) for m in resp.mounts]

    @translate_rpc_errors
    def remove(self, key: str) -> None:
        self.stub.Remove(snapshots_pb2.RemoveSnapshotRequest(key=key))

    @translate_rpc_errors
    def list(self, *filters: str) -> list[SnapshotInfo]:
        out: list[SnapshotInfo] = []
        for resp in self.stub.List(snapshots_pb2.ListSnapshotsRequest(filters=list(filters))):
            out.extend(snapshot_from(i) for i in resp.info)
        return out


class ImagesClient:
    """Everything image-related of shimd on one channel, scoped to one namespace."""

    def __init__(self, channel: grpc.Channel, namespace: str = namespaces.DEFAULT) -> None:
        self.namespace = namespaces.validate(namespace)
        self.content = RemoteContent(channel, namespace)
        self.images = RemoteImages(channel)
        self.snapshots = RemoteSnapshots(channel)

    def prepare_container_rootfs(self, image_ref: str, container_id: str, *,
                                 platform: Platform = DEFAULT_PLATFORM) -> ContainerRootfs:
        """Unpack (in shimd) and prepare the container's snapshot; mounts and run config."""
        name = str(parse_reference(image_ref))
        image = self.images.get(self.namespace, name)
        manifest = resolve_manifest(self.content, image.target, platform)
        config = read_config(self.content, manifest)
        key = snapshot_key(self.namespace, container_id)
        try:
            mounts = self.snapshots.mounts(key)
        except NotFound:
            top = self.images.unpack(self.namespace, name)
            mounts = self.snapshots.prepare(key, top, {LABEL_CONTAINER: container_id,
                                                       LABEL_IMAGE: name})
        return ContainerRootfs(name, key, mounts, RunConfig.from_image(config))

    def release_container_rootfs(self, container_id: str) -> None:
        with contextlib.suppress(NotFound):
            self.snapshots.remove(snapshot_key(self.namespace, container_id))
