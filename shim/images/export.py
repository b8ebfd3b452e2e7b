"""What to export of an image: its target, or its platform manifest if the index is partial.

A pull keeps only the linux/amd64 manifest of a multi-platform index; writing the index
out as it is would name blobs we do not have, which skopeo and docker refuse.
"""

from __future__ import annotations

from shim.content.api import ContentAPI
from shim.images.oci import DEFAULT_PLATFORM, INDEXES, Descriptor, Platform
from shim.images.resolve import children, resolve_manifest


def export_target(content: ContentAPI, target: Descriptor,
                  platform: Platform = DEFAULT_PLATFORM) -> Descriptor:
    if target.media_type in INDEXES and not all(
            content.exists(c.digest) for c in children(content, target)):
        return resolve_manifest(content, target, platform).descriptor
    return target
