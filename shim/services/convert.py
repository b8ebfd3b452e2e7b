"""Conversions between the image-side library types and their protobuf messages."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from shim.api.v1 import content_pb2, images_pb2, snapshots_pb2, tasks_pb2
from shim.content.store import Info, IngestStatus
from shim.errors import InvalidArgument
from shim.images.oci import Descriptor
from shim.images.store import Image
from shim.snapshots import Kind, Mount, SnapshotInfo

_KIND = {Kind.VIEW: snapshots_pb2.SNAPSHOT_KIND_VIEW,
         Kind.ACTIVE: snapshots_pb2.SNAPSHOT_KIND_ACTIVE,
         Kind.COMMITTED: snapshots_pb2.SNAPSHOT_KIND_COMMITTED}
_KIND_BACK = {v: k for k, v in _KIND.items()}


def ts(seconds: float) -> Timestamp:
    t = Timestamp()
    t.FromNanoseconds(int(seconds * 1e9))
    return t


def seconds(t: Timestamp) -> float:
    return float(t.ToNanoseconds()) / 1e9


def info_pb(info: Info) -> content_pb2.ContentInfo:
    return content_pb2.ContentInfo(digest=info.digest, size=info.size,
                                   created_at=ts(info.created_at),
                                   updated_at=ts(info.updated_at), labels=info.labels)


def info_from(pb: content_pb2.ContentInfo) -> Info:
    return Info(pb.digest, pb.size, seconds(pb.created_at), seconds(pb.updated_at),
                dict(pb.labels))


def ingest_pb(st: IngestStatus) -> content_pb2.IngestStatus:
    return content_pb2.IngestStatus(ref=st.ref, offset=st.offset, total=st.total,
                                    expected=st.expected, started_at=ts(st.started_at),
                                    updated_at=ts(st.updated_at))


def ingest_from(pb: content_pb2.IngestStatus) -> IngestStatus:
    return IngestStatus(pb.ref, pb.offset, pb.total, pb.expected, seconds(pb.started_at),
                        seconds(pb.updated_at))


def descriptor_pb(d: Descriptor) -> images_pb2.Descriptor:
    pb = images_pb2.Descriptor(media_type=d.media_type, digest=d.digest, size=d.size,
                               annotations=d.annotations)
    if d.platform:
        pb.platform.CopyFrom(images_pb2.Platform(
            os=str(d.platform.get("os", "")),
            architecture=str(d.platform.get("architecture", "")),
            variant=str(d.platform.get("variant", ""))))
    return pb


def descriptor_from(pb: images_pb2.Descriptor) -> Descriptor:
    if not pb.digest:
        raise InvalidArgument("an image needs a target descriptor with a digest")
    platform: dict[str, Any] | None = None
    if pb.HasField("platform"):
        platform = {"os": pb.platform.os, "architecture": pb.platform.architecture}
        if pb.platform.variant:
            platform["variant"] = pb.platform.variant
    return Descriptor.from_dict({"mediaType": pb.media_type, "digest": pb.digest,
                                 "size": pb.size, "annotations": dict(pb.annotations),
                                 "platform": platform}, "target")


def image_pb(image: Image) -> images_pb2.Image:
    return images_pb2.Image(name=image.name, labels=image.labels,
                            target=descriptor_pb(image.target),
                            created_at=ts(image.created_at), updated_at=ts(image.updated_at))


def image_from(pb: images_pb2.Image) -> Image:
    return Image(pb.name, descriptor_from(pb.target), dict(pb.labels), seconds(pb.created_at),
                 seconds(pb.updated_at))


def mount_pb(m: Mount) -> tasks_pb2.Mount:
    return tasks_pb2.Mount(type=m["type"], source=m["source"], target=m.get("destination", ""),
                           options=m.get("options", []))


def mount_from(pb: tasks_pb2.Mount) -> Mount:
    return {"type": pb.type, "source": pb.source, "options": list(pb.options)}


def snapshot_pb(info: SnapshotInfo) -> snapshots_pb2.SnapshotInfo:
    return snapshots_pb2.SnapshotInfo(name=info.name, parent=info.parent, kind=_KIND[info.kind],
                                      created_at=ts(info.created_at),
                                      updated_at=ts(info.updated_at), labels=info.labels)


def snapshot_from(pb: snapshots_pb2.SnapshotInfo) -> SnapshotInfo:
    return SnapshotInfo(pb.name, _KIND_BACK.get(pb.kind, Kind.ACTIVE), pb.parent,
                        dict(pb.labels), seconds(pb.created_at), seconds(pb.updated_at))


def label_update(current: dict[str, str], new: dict[str, str],
                 mask: list[str]) -> tuple[dict[str, str], bool]:
    """Apply an update_mask of "labels" / "labels.KEY" entries: (labels, replace-all)."""
    if not mask or "labels" in mask:
        return dict(new), True
    out = {}
    for path in mask:
        if not path.startswith("labels."):
            raise InvalidArgument(f"update_mask field {path!r}: only labels and labels.KEY")
        key = path[len("labels."):]
        out[key] = new.get(key, "")
    return out, False
