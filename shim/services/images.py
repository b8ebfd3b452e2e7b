"""Images: the gRPC edge of `shim.images.store.ImageStore`, plus Unpack and Prune.

Needs the content and snapshots services registered before it (ctx.shared).
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from shim import namespaces
from shim.api.v1 import images_pb2, images_pb2_grpc
from shim.content import ContentStore
from shim.errors import InvalidArgument
from shim.images.gc import DEFAULT_GRACE, prune
from shim.images.oci import DEFAULT_PLATFORM, Platform, chain_ids
from shim.images.progress import ProgressEvent, Status
from shim.images.reference import parse_reference
from shim.images.resolve import read_config, resolve_manifest
from shim.images.store import Image, ImageStore
from shim.images.unpack import unpack
from shim.services import ServiceContext
from shim.services.convert import descriptor_from, image_from, image_pb
from shim.services.events import matches, parse_filters
from shim.snapshots import OverlaySnapshotter


def _name(raw: str) -> str:
    """Image names are normalized references; bad ones are refused here, at the edge."""
    if not raw:
        raise InvalidArgument("an image name is required")
    return str(parse_reference(raw))


class ImagesServicer(images_pb2_grpc.ImagesServicer):  # type: ignore[misc]
    def __init__(self, store: ImageStore, content: ContentStore,
                 snapshots: OverlaySnapshotter) -> None:
        self.store = store
        self.content = content
        self.snapshots = snapshots

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        return images_pb2.GetImageResponse(image=image_pb(self.store.get(ns, _name(request.name))))

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        filters = parse_filters(list(request.filters))
        out = []
        for image in self.store.list(ns):
            fields = {"name": image.name, "target.digest": image.target.digest,
                      "target.mediatype": image.target.media_type}
            fields.update({f"labels.{k}": v for k, v in image.labels.items()})
            if matches(filters, fields):
                out.append(image_pb(image))
        return images_pb2.ListImagesResponse(images=out)

    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        image = image_from(request.image)
        image.name = _name(image.name)
        return images_pb2.CreateImageResponse(image=image_pb(self.store.create(ns, image)))

    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        name = _name(request.image.name)
        current = self.store.get(ns, name)
        mask = list(request.update_mask) or ["labels", "target"]
        for field in mask:
            if field == "labels":
                current.labels = dict(request.image.labels)
            elif field == "target":
                current.target = descriptor_from(request.image.target)
            elif field.startswith("labels."):
                key = field[len("labels."):]
                value = request.image.labels.get(key, "")
                if value:
                    current.labels[key] = value
                else:
                    current.labels.pop(key, None)
            else:
                raise InvalidArgument(f"update_mask field {field!r}: use labels, labels.KEY "
                                      "or target")
        return images_pb2.UpdateImageResponse(image=image_pb(self.store.update(ns, current)))

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.store.delete(namespaces.from_context(context), _name(request.name))
        return empty_pb2.Empty()

    def Unpack(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        image: Image = self.store.get(ns, _name(request.name))
        platform = DEFAULT_PLATFORM
        if request.HasField("platform") and request.platform.os:
            platform = Platform(request.platform.os, request.platform.architecture,
                                request.platform.variant)
        manifest = resolve_manifest(self.content, image.target, platform)
        config = read_config(self.content, manifest)
        done: list[str] = []

        def record(event: ProgressEvent) -> None:
            if event.status == Status.EXTRACTED:
                done.append(event.digest)

        before = {c for c in chain_ids(config.diff_ids) if self.snapshots.exists(c)}
        top = unpack(self.content, self.snapshots, manifest, config, record)
        unpacked = [layer.digest for layer, chain in zip(manifest.layers,
                                                         chain_ids(config.diff_ids), strict=True)
                    if chain not in before]
        return images_pb2.UnpackImageResponse(chain_id=top, layers_unpacked=unpacked)

    def Prune(self, request: Any, context: grpc.ServicerContext) -> Any:
        grace = DEFAULT_GRACE if request.grace_seconds < 0 else request.grace_seconds
        result = prune(self.content, self.store, self.snapshots, grace, request.dry_run)
        return images_pb2.PruneResponse(blobs=result.blobs, snapshots=result.snapshots,
                                        bytes_freed=result.bytes_freed)


def register(server: grpc.Server, ctx: ServiceContext) -> None:
    content = ctx.shared.get("content")
    snapshots = ctx.shared.get("snapshots")
    if not isinstance(content, ContentStore) or not isinstance(snapshots, OverlaySnapshotter):
        raise RuntimeError("shim.services.images needs shim.services.content and "
                           "shim.services.snapshots registered before it")
    store = ImageStore(ctx.root)
    ctx.shared["images"] = store
    images_pb2_grpc.add_ImagesServicer_to_server(ImagesServicer(store, content, snapshots),
                                                 server)
