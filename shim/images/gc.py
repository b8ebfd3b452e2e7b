"""Garbage collection: remove blobs and snapshots no image and no container uses.

Roots are every image of every namespace (its blobs, and the chain of snapshots of its
platform manifest) and every active or view snapshot (a container's rootfs, kept with
its whole chain). Blobs and unpack snapshots younger than `grace` seconds are kept too,
so that a pull or an import in flight (which writes blobs before it names the image)
is never collected from under itself.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

from shim.content import ContentStore
from shim.errors import FailedPrecondition, InvalidArgument, NotFound, ShimError
from shim.images.oci import chain_ids
from shim.images.resolve import read_config, resolve_manifest, walk
from shim.images.store import ImageStore
from shim.images.unpack import LABEL_EXTRACTING
from shim.snapshots import Kind, OverlaySnapshotter

log = logging.getLogger(__name__)
DEFAULT_GRACE = 300.0


@dataclass
class PruneResult:
    blobs: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    bytes_freed: int = 0


def prune(content: ContentStore, images: ImageStore, snapshotter: OverlaySnapshotter,
          grace: float = DEFAULT_GRACE, dry_run: bool = False) -> PruneResult:
    result = PruneResult()
    now = time.time()
    keep_blobs: set[str] = set()
    keep_snaps: set[str] = set()
    for ns in images.namespaces():
        for image in images.list(ns):
            keep_blobs.update(d.digest for d in walk(content, image.target))
            with contextlib.suppress(InvalidArgument, NotFound):
                config = read_config(content, resolve_manifest(content, image.target))
                keep_snaps.update(chain_ids(config.diff_ids))

    infos = {i.name: i for i in snapshotter.list()}
    for name, info in infos.items():
        fresh_extract = LABEL_EXTRACTING in info.labels and now - info.created_at < grace
        if info.kind != Kind.COMMITTED and (fresh_extract or LABEL_EXTRACTING not in info.labels):
            parent = name
            while parent and parent in infos:
                keep_snaps.add(parent)
                parent = infos[parent].parent

    removed = True
    while removed:
        removed = False
        parents = {i.parent for i in snapshotter.list()}
        for info in snapshotter.list():
            if info.name in keep_snaps or info.name in parents:
                continue
            if not dry_run:
                try:
                    usage = snapshotter.usage(info.name)
                    snapshotter.remove(info.name)
                except (NotFound, FailedPrecondition):
                    continue
                result.bytes_freed += usage.size
                removed = True
            result.snapshots.append(info.name)

    for blob in content.list():
        if blob.digest in keep_blobs or now - blob.created_at < grace:
            continue
        if "berth.gc.root" in blob.labels:
            continue
        if not dry_run:
            try:
                content.delete(blob.digest)
            except ShimError:
                continue
        result.blobs.append(blob.digest)
        result.bytes_freed += blob.size
    log.info("prune removed %d blobs, %d snapshots, %d bytes", len(result.blobs),
             len(result.snapshots), result.bytes_freed)
    return result
