"""Unpack an image's layers into committed snapshots named by chain ID, each once."""

from __future__ import annotations

import contextlib
import uuid

from shim.archive import apply_layer
from shim.content.api import ContentAPI
from shim.errors import AlreadyExists, InvalidArgument, ShimError
from shim.images.oci import ImageConfig, Manifest, chain_ids
from shim.images.progress import ProgressEvent, ProgressFn, Status, no_progress
from shim.images.resolve import IterStream
from shim.snapshots import OverlaySnapshotter

LABEL_LAYER_DIGEST = "berth.layer.digest"
LABEL_EXTRACTING = "berth.extracting"


def unpack(content: ContentAPI, snapshotter: OverlaySnapshotter, manifest: Manifest,
           config: ImageConfig, progress: ProgressFn = no_progress) -> str:
    """Make sure every layer of the image is a committed snapshot; the top chain ID.

    Layers already unpacked (by this image or another sharing them) are skipped. A
    layer whose DiffID does not match the config is an error and leaves no snapshot.
    """
    chains = chain_ids(config.diff_ids)
    if len(chains) != len(manifest.layers):
        raise InvalidArgument(f"image {manifest.descriptor.digest}: {len(manifest.layers)} "
                              f"layers but {len(chains)} diff_ids")
    if chains and snapshotter.exists(chains[-1]):
        for layer in manifest.layers:
            progress(ProgressEvent(Status.EXTRACTED, layer.digest, layer.size, layer.size))
        return chains[-1]
    parent = ""
    for layer, diff_id, chain in zip(manifest.layers, config.diff_ids, chains, strict=True):
        if snapshotter.exists(chain):
            progress(ProgressEvent(Status.EXTRACTED, layer.digest, layer.size, layer.size))
            parent = chain
            continue
        progress(ProgressEvent(Status.EXTRACTING, layer.digest, 0, layer.size))
        key = f"extract-{uuid.uuid4().hex[:12]} {chain}"
        snapshotter.prepare(key, parent, labels={LABEL_EXTRACTING: chain}, check_mount=False)
        try:
            stream = IterStream(content.read(layer.digest))
            result = apply_layer(stream, snapshotter.upper_dir(key))
            if result.diff_id != diff_id:
                raise InvalidArgument(
                    f"layer {layer.digest}: uncompressed digest {result.diff_id} does not "
                    f"match the config's diff_id {diff_id}")
            try:
                snapshotter.commit(chain, key, labels={LABEL_LAYER_DIGEST: layer.digest})
            except AlreadyExists:
                snapshotter.remove(key)
        except BaseException:
            with contextlib.suppress(ShimError):
                snapshotter.remove(key)
            raise
        progress(ProgressEvent(Status.EXTRACTED, layer.digest, layer.size, layer.size))
        parent = chain
    return parent


def is_unpacked(snapshotter: OverlaySnapshotter, config: ImageConfig) -> bool:
    chains = chain_ids(config.diff_ids)
    return not chains or snapshotter.exists(chains[-1])
