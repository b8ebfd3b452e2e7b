"""A container's rootfs and default process from an image: what `run --image` needs.

The rootfs is an active overlay snapshot keyed `NAMESPACE/CONTAINER_ID` on the image's
top chain ID (the image is unpacked first if it is not yet), returned as OCI mounts to
put into the bundle's config.json (or to mount at the bundle's rootfs path).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from shim.content import ContentStore
from shim.errors import NotFound
from shim.images.oci import DEFAULT_PLATFORM, ImageConfig, Platform
from shim.images.progress import ProgressFn, no_progress
from shim.images.reference import parse_reference
from shim.images.resolve import read_config, resolve_manifest
from shim.images.store import ImageStore
from shim.images.unpack import unpack
from shim.snapshots import Mount, OverlaySnapshotter

LABEL_CONTAINER = "berth.container"
LABEL_IMAGE = "berth.image"


@dataclass
class RunConfig:
    """The process defaults of an image config (docker's Entrypoint/Cmd/Env/WorkingDir/User)."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""

    def args(self, command: list[str] | None = None) -> list[str]:
        """Entrypoint + (the given command, else the image's Cmd), as docker run does."""
        return [*self.entrypoint, *(command if command else self.cmd)]

    @classmethod
    def from_image(cls, config: ImageConfig) -> RunConfig:
        return cls(config.entrypoint, config.cmd, config.env, config.working_dir or "/",
                   config.user)


@dataclass
class ContainerRootfs:
    image: str
    """The normalized image name."""
    snapshot_key: str
    mounts: list[Mount]
    config: RunConfig


def snapshot_key(namespace: str, container_id: str) -> str:
    return f"{namespace}/{container_id}"


def prepare_container_rootfs(root: Path, image_ref: str, container_id: str,
                             namespace: str = "default", *,
                             platform: Platform = DEFAULT_PLATFORM,
                             progress: ProgressFn = no_progress) -> ContainerRootfs:
    """Unpack `image_ref` if needed and prepare the container's writable snapshot.

    Idempotent: a container whose snapshot exists gets the same mounts back (for a
    restart). Raises NotFound if the image is not in the store (pull it first).
    """
    content = ContentStore(root)
    images = ImageStore(root)
    snapshotter = OverlaySnapshotter(root)
    name = str(parse_reference(image_ref))
    image = images.get(namespace, name)
    manifest = resolve_manifest(content, image.target, platform)
    config = read_config(content, manifest)
    key = snapshot_key(namespace, container_id)
    if snapshotter.exists(key):
        mounts = snapshotter.mounts(key)
    else:
        top = unpack(content, snapshotter, manifest, config, progress)
        mounts = snapshotter.prepare(key, top, labels={LABEL_CONTAINER: container_id,
                                                       LABEL_IMAGE: name})
    return ContainerRootfs(name, key, mounts, RunConfig.from_image(config))


def release_container_rootfs(root: Path, container_id: str, namespace: str = "default") -> None:
    """Remove the container's snapshot (its upperdir); the image's layers stay."""
    with contextlib.suppress(NotFound):
        OverlaySnapshotter(root).remove(snapshot_key(namespace, container_id))
