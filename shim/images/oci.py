"""OCI image-spec and Docker schema 2 objects: media types, descriptors, manifests, configs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from shim.content.digest import parse_digest
from shim.errors import InvalidArgument, NotFound

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
LAYERS = frozenset({OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_LAYER_GZIP,
                    DOCKER_FOREIGN_GZIP, "application/vnd.oci.image.layer.nondistributable.v1.tar",
                    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"})

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def matches(self, spec: dict[str, Any] | None) -> bool:
        if not spec:
            return False
        if spec.get("os") != self.os or spec.get("architecture") != self.architecture:
            return False
        return not self.variant or spec.get("variant", "") in ("", self.variant)


DEFAULT_PLATFORM = Platform()


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, Any] | None = None
    urls: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.urls:
            out["urls"] = list(self.urls)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "descriptor") -> Descriptor:
        try:
            digest = str(data["digest"])
            size = int(data["size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"{where}: missing or bad digest/size ({exc})") from None
        parse_digest(digest)
        if size < 0:
            raise InvalidArgument(f"{where}: negative size {size}")
        return cls(str(data.get("mediaType", "")), digest, size,
                   dict(data.get("annotations") or {}), data.get("platform"),
                   list(data.get("urls") or []))


def canonical(obj: dict[str, Any]) -> bytes:
    """The bytes we write for a manifest/config/index we make (stable across runs)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


def descriptor_for(media_type: str, data: bytes, **kw: Any) -> Descriptor:
    return Descriptor(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data), **kw)


def load_json(data: bytes, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{where}: expected a JSON object")
    return obj


def media_type_of(obj: dict[str, Any], fallback: str = "") -> str:
    """A manifest's own media type; OCI ones may omit it, so guess from the shape."""
    mt = obj.get("mediaType") or fallback
    if mt:
        return str(mt)
    if "manifests" in obj:
        return OCI_INDEX
    if "layers" in obj and "config" in obj:
        return OCI_MANIFEST
    raise InvalidArgument("cannot tell the media type of a manifest without one")


@dataclass
class Manifest:
    """A single-platform image manifest, read and checked."""

    descriptor: Descriptor
    config: Descriptor
    layers: list[Descriptor]
    raw: dict[str, Any]

    @classmethod
    def parse(cls, desc: Descriptor, data: bytes) -> Manifest:
        obj = load_json(data, f"manifest {desc.digest}")
        if obj.get("schemaVersion") != 2:
            raise InvalidArgument(f"manifest {desc.digest}: schemaVersion "
                                  f"{obj.get('schemaVersion')!r} is not supported (need 2)")
        config = Descriptor.from_dict(obj.get("config") or {}, f"manifest {desc.digest} config")
        layers = [Descriptor.from_dict(x, f"manifest {desc.digest} layer {i}")
                  for i, x in enumerate(obj.get("layers") or [])]
        for layer in layers:
            if layer.media_type not in LAYERS:
                raise InvalidArgument(f"manifest {desc.digest}: unsupported layer media type "
                                      f"{layer.media_type!r}")
        return cls(desc, config, layers, obj)


@dataclass
class ImageConfig:
    """The parts of an image config a container is made from."""

    digest: str
    raw: dict[str, Any]

    @property
    def diff_ids(self) -> list[str]:
        ids = (self.raw.get("rootfs") or {}).get("diff_ids") or []
        for d in ids:
            parse_digest(d)
        return list(ids)

    @property
    def config(self) -> dict[str, Any]:
        c = self.raw.get("config") or {}
        return c if isinstance(c, dict) else {}

    @property
    def entrypoint(self) -> list[str]:
        return list(self.config.get("Entrypoint") or [])

    @property
    def cmd(self) -> list[str]:
        return list(self.config.get("Cmd") or [])

    @property
    def env(self) -> list[str]:
        return list(self.config.get("Env") or [])

    @property
    def working_dir(self) -> str:
        return str(self.config.get("WorkingDir") or "")

    @property
    def user(self) -> str:
        return str(self.config.get("User") or "")

    @property
    def platform(self) -> Platform:
        return Platform(str(self.raw.get("os", "")), str(self.raw.get("architecture", "")),
                        str(self.raw.get("variant", "")))


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            h = hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()
            out.append("sha256:" + h)
    return out


def select_platform(index: dict[str, Any], digest: str,
                    platform: Platform = DEFAULT_PLATFORM) -> Descriptor:
    """The manifest of an index for `platform`, or NotFound listing what there is."""
    seen = []
    for i, entry in enumerate(index.get("manifests") or []):
        desc = Descriptor.from_dict(entry, f"index {digest} entry {i}")
        if platform.matches(desc.platform):
            return desc
        p = desc.platform or {}
        seen.append(f"{p.get('os', '?')}/{p.get('architecture', '?')}")
    raise NotFound(f"index {digest} has no manifest for {platform.os}/{platform.architecture} "
                   f"(has: {', '.join(seen) or 'none'})")
