"""Make images without a registry: from layer tars, from a rootfs tar, and a busybox base.

Everything written is deterministic (fixed times, gzip without a timestamp), so the
same input gives the same digests on every machine.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

from shim.archive import Stream, detect_compression, diff_id_of
from shim.content.api import ContentAPI
from shim.errors import InvalidArgument
from shim.images.oci import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    canonical,
    descriptor_for,
)
from shim.images.reference import parse_reference
from shim.images.resolve import IterStream
from shim.images.store import Image, ImageStoreAPI

EPOCH = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MEDIA = {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}


def store_layer(content: ContentAPI, stream: Stream) -> tuple[Descriptor, str]:
    """Stream a layer (any compression) into the store: its descriptor and DiffID."""
    head = stream.read(4) or b""
    w = content.writer(f"layer-import-{uuid.uuid4().hex}")
    try:
        w.write(head)
        size = len(head)
        while chunk := stream.read(1 << 20) or b"":
            w.write(chunk)
            size += len(chunk)
        digest = w.commit(size)
    finally:
        w.close()
    desc = Descriptor(_MEDIA[detect_compression(head)], digest, size)
    diff_id = diff_id_of(IterStream(content.read(digest))).diff_id
    return desc, diff_id


def make_image(content: ContentAPI, layers: list[tuple[Descriptor, str]],
               config: dict[str, Any] | None = None, history: str = "") -> Descriptor:
    """Write a config and an OCI manifest for `layers`; the manifest's descriptor."""
    cfg: dict[str, Any] = {
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [DEFAULT_PATH], **(config or {})},
        "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
        "history": [{"created": CREATED, "created_by": history or "berth"}] * len(layers),
    }
    cfg_bytes = canonical(cfg)
    cfg_desc = descriptor_for(OCI_CONFIG, cfg_bytes)
    content.write_blob(cfg_bytes, cfg_desc.digest)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": cfg_desc.to_dict(),
        "layers": [desc.to_dict() for desc, _ in layers],
    }
    data = canonical(manifest)
    desc = descriptor_for(OCI_MANIFEST, data)
    content.write_blob(data, desc.digest)
    return desc


def name_image(images: ImageStoreAPI, namespace: str, ref: str, target: Descriptor) -> Image:
    name = str(parse_reference(ref))
    return images.put(namespace, Image(name, target))


def import_rootfs(content: ContentAPI, images: ImageStoreAPI, namespace: str, tar_path: Path,
                  ref: str, config: dict[str, Any] | None = None) -> Image:
    """A rootfs tar (plain, gzip or zstd) as a one-layer image named `ref`."""
    with open(tar_path, "rb") as f:
        layer = store_layer(content, f)
    target = make_image(content, [layer], config, history=f"import {tar_path.name}")
    return name_image(images, namespace, ref, target)


def busybox_layer(busybox: Path = Path("/bin/busybox")) -> bytes:
    """A gzip'd rootfs tar: static busybox, one hard link per applet, passwd and group."""
    if not busybox.is_file():
        raise InvalidArgument(f"{busybox} not found: install busybox-static")
    applets = subprocess.run([str(busybox), "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, EPOCH, link
            info.uname = info.gname = "root"
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        for d in ("bin", "dev", "etc", "home", "proc", "root", "run", "sys", "usr", "usr/bin",
                  "usr/sbin", "sbin", "var", "var/log"):
            add(d, tarfile.DIRTYPE, 0o700 if d == "root" else 0o755)
        add("tmp", tarfile.DIRTYPE, 0o1777)
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox.read_bytes())
        for applet in sorted(set(applets) - {"busybox"}):
            add(f"bin/{applet}", tarfile.LNKTYPE, 0o755, link="bin/busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\nnogroup:x:65534:\n")
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def build_busybox(content: ContentAPI, images: ImageStoreAPI, namespace: str,
                  ref: str = "docker.io/library/busybox:latest",
                  busybox: Path = Path("/bin/busybox")) -> Image:
    """The busybox base image, made offline from the host's busybox-static."""
    layer = store_layer(content, io.BytesIO(busybox_layer(busybox)))
    target = make_image(content, [layer], {"Cmd": ["sh"]},
                        history=f"berth busybox from {os.path.realpath(busybox)}")
    return name_image(images, namespace, ref, target)
