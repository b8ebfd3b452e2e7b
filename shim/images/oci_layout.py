"""OCI image layout, as a directory or a tar of one (what `skopeo copy oci:` and
`oci-archive:` read and write, and what containerd exports).

Names: on save each image's entry in index.json carries `io.containerd.image.name`
(the full reference) and `org.opencontainers.image.ref.name` (its tag). On load the
first is used; else a ref.name that is a full reference; else `base_name:ref.name`.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from shim.content.api import ContentAPI
from shim.content.digest import parse_digest
from shim.errors import AlreadyExists, InvalidArgument, NotFound
from shim.images.export import export_target
from shim.images.oci import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    OCI_INDEX,
    Descriptor,
    load_json,
)
from shim.images.reference import parse_reference
from shim.images.resolve import IterStream, children, walk
from shim.images.store import Image, ImageStoreAPI

LAYOUT_FILE = "oci-layout"
LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
CHUNK = 1 << 20


class LayoutSource:
    """Read files of a layout, from a directory or a tar (plain or compressed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if path.is_file():
            try:
                self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by close())
            except tarfile.TarError as exc:
                raise InvalidArgument(f"{path}: not a tar archive ({exc})") from None
            for m in self._tar.getmembers():
                self._members[os.path.normpath(m.name).lstrip("/")] = m
        elif not path.is_dir():
            raise NotFound(f"{path}: no such file or directory")

    def has(self, name: str) -> bool:
        if self._tar is not None:
            return name in self._members
        return (self.path / name).is_file()

    def open(self, name: str) -> IO[bytes]:
        if self._tar is not None:
            member = self._members.get(name)
            f = self._tar.extractfile(member) if member is not None else None
            if f is None:
                raise NotFound(f"{self.path}: no file {name!r} in the archive")
            return f
        try:
            return open(self.path / name, "rb")
        except FileNotFoundError:
            raise NotFound(f"{self.path}: no file {name!r}") from None

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()


def import_blob(content: ContentAPI, src: IO[bytes], desc: Descriptor) -> None:
    """Copy a blob in, verified against its descriptor by the store's commit."""
    if content.exists(desc.digest):
        return
    try:
        w = content.writer(f"import-{desc.digest}-{uuid.uuid4().hex[:8]}", desc.size, desc.digest)
    except AlreadyExists:
        return
    try:
        w.truncate(0)
        while chunk := src.read(CHUNK):
            w.write(chunk)
        w.commit(desc.size, desc.digest)
    finally:
        w.close()


def _blob_name(digest: str) -> str:
    algorithm, hexpart = parse_digest(digest)
    return f"blobs/{algorithm}/{hexpart}"


def _image_name(entry: Descriptor, base_name: str) -> str | None:
    ann = entry.annotations
    if ann.get(ANNOTATION_IMAGE_NAME):
        return str(parse_reference(ann[ANNOTATION_IMAGE_NAME]))
    ref = ann.get(ANNOTATION_REF_NAME, "")
    if not ref:
        return None
    if "/" in ref:
        return str(parse_reference(ref))
    if base_name:
        return str(parse_reference(f"{base_name}:{ref}"))
    raise InvalidArgument(f"image {entry.digest} is named only {ref!r} (a tag): give a base "
                          "name (--base-name REPO) to load it as REPO:" + ref)


def _copy_tree(content: ContentAPI, source: LayoutSource, root: Descriptor) -> None:
    """Import `root` and everything it references, parents after children exist."""
    pending = [root]
    seen: set[str] = set()
    while pending:
        desc = pending.pop()
        if desc.digest in seen:
            continue
        seen.add(desc.digest)
        name = _blob_name(desc.digest)
        if not source.has(name):
            if content.exists(desc.digest):
                continue
            raise NotFound(f"{source.path}: blob {desc.digest} is missing from the layout")
        with source.open(name) as f:
            import_blob(content, f, desc)
        pending.extend(children(content, desc))


def load_oci(content: ContentAPI, images: ImageStoreAPI, namespace: str, path: Path,
             base_name: str = "") -> list[Image]:
    """Load every image of an OCI layout (directory or tar)."""
    source = LayoutSource(path)
    try:
        if not source.has(LAYOUT_FILE):
            raise InvalidArgument(f"{path}: not an OCI layout (no {LAYOUT_FILE})")
        index = load_json(source.read("index.json"), f"{path}: index.json")
        loaded = []
        for i, entry in enumerate(index.get("manifests") or []):
            desc = Descriptor.from_dict(entry, f"{path}: index.json entry {i}")
            _copy_tree(content, source, desc)
            name = _image_name(desc, base_name)
            if name:
                target = Descriptor(desc.media_type, desc.digest, desc.size, {}, desc.platform)
                loaded.append(images.put(namespace, Image(name, target)))
        return loaded
    finally:
        source.close()


def _layout_entries(content: ContentAPI, images: ImageStoreAPI, namespace: str,
                    names: list[str]) -> tuple[dict[str, Any], list[Descriptor]]:
    manifests = []
    blobs: dict[str, Descriptor] = {}
    for raw in names:
        name = str(parse_reference(raw))
        image = images.get(namespace, name)
        target = export_target(content, image.target)
        ann = {ANNOTATION_IMAGE_NAME: name}
        ref = parse_reference(name)
        if ref.tag:
            ann[ANNOTATION_REF_NAME] = ref.tag
        manifests.append(Descriptor(target.media_type, target.digest, target.size, ann,
                                    target.platform).to_dict())
        for desc in walk(content, target):
            blobs.setdefault(desc.digest, desc)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return index, list(blobs.values())


def save_oci(content: ContentAPI, images: ImageStoreAPI, namespace: str, names: list[str],
             dest: Path) -> None:
    """Write images as an OCI layout: a directory if `dest` is one or ends in '/', else a tar."""
    index, blobs = _layout_entries(content, images, namespace, names)
    index_bytes = json.dumps(index, indent=None).encode()
    if dest.is_dir() or str(dest).endswith("/"):
        (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (dest / LAYOUT_FILE).write_bytes(LAYOUT)
        for desc in blobs:
            target = dest / _blob_name(desc.digest)
            if target.exists():
                continue
            tmp = target.with_name(target.name + ".tmp")
            with open(tmp, "wb") as f:
                for chunk in content.read(desc.digest):
                    f.write(chunk)
            os.replace(tmp, target)
        (dest / "index.json").write_bytes(index_bytes)
        return
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as out, tarfile.open(fileobj=out, mode="w|",
                                              format=tarfile.PAX_FORMAT) as tar:
        for name in ("blobs", "blobs/sha256"):
            add_dir(tar, name)
        add_bytes(tar, LAYOUT_FILE, LAYOUT)
        for desc in blobs:
            add_stream(tar, _blob_name(desc.digest), desc.size, content.read(desc.digest))
        add_bytes(tar, "index.json", index_bytes)
    os.replace(tmp, dest)


# -- tar writing helpers, shared with the docker archive ------------------------------

def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def add_stream(tar: tarfile.TarFile, name: str, size: int, chunks: Iterator[bytes]) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    tar.addfile(info, io.BufferedReader(IterStream(chunks), CHUNK))
