"""Walking an image's blobs in a content store: index → manifest → config and layers."""

from __future__ import annotations

import io
from collections.abc import Iterator

from shim.content.api import ContentAPI
from shim.errors import InvalidArgument, NotFound
from shim.images.oci import (
    DEFAULT_PLATFORM,
    INDEXES,
    MANIFESTS,
    Descriptor,
    ImageConfig,
    Manifest,
    Platform,
    load_json,
    media_type_of,
    select_platform,
)


def resolve_manifest(content: ContentAPI, target: Descriptor,
                     platform: Platform = DEFAULT_PLATFORM) -> Manifest:
    """The single-platform manifest `target` names (itself, or its index's choice)."""
    desc = target
    for _ in range(4):
        data = content.read_bytes(desc.digest)
        obj = load_json(data, f"blob {desc.digest}")
        mt = media_type_of(obj, desc.media_type)
        if mt in INDEXES:
            desc = select_platform(obj, desc.digest, platform)
            continue
        if mt in MANIFESTS:
            if desc.media_type != mt:
                desc = Descriptor(mt, desc.digest, desc.size, desc.annotations, desc.platform)
            return Manifest.parse(desc, data)
        raise InvalidArgument(f"blob {desc.digest} has media type {mt!r}, not an image")
    raise InvalidArgument(f"image {target.digest}: indexes nested too deep")


def read_config(content: ContentAPI, manifest: Manifest) -> ImageConfig:
    raw = load_json(content.read_bytes(manifest.config.digest),
                    f"config {manifest.config.digest}")
    config = ImageConfig(manifest.config.digest, raw)
    if len(config.diff_ids) != len(manifest.layers):
        raise InvalidArgument(
            f"image {manifest.descriptor.digest}: {len(manifest.layers)} layers but "
            f"{len(config.diff_ids)} diff_ids in its config")
    return config


def children(content: ContentAPI, desc: Descriptor) -> list[Descriptor]:
    """The descriptors a blob refers to (empty for configs and layers)."""
    if desc.media_type not in INDEXES | MANIFESTS and desc.media_type:
        return []
    obj = load_json(content.read_bytes(desc.digest), f"blob {desc.digest}")
    mt = media_type_of(obj, desc.media_type)
    if mt in INDEXES:
        return [Descriptor.from_dict(m) for m in obj.get("manifests") or []]
    if mt in MANIFESTS:
        return [Descriptor.from_dict(obj["config"])] + [
            Descriptor.from_dict(x) for x in obj.get("layers") or []]
    return []


def walk(content: ContentAPI, target: Descriptor) -> Iterator[Descriptor]:
    """Every descriptor reachable from `target` that is in the store (parents first)."""
    stack = [target]
    seen: set[str] = set()
    while stack:
        desc = stack.pop()
        if desc.digest in seen or not content.exists(desc.digest):
            continue
        seen.add(desc.digest)
        yield desc
        try:
            stack.extend(reversed(children(content, desc)))
        except (InvalidArgument, NotFound):
            continue


class IterStream(io.RawIOBase):
    """A file object over an iterator of byte chunks (a streamed content read)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n
