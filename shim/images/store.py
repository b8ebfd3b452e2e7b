"""The image store: per namespace, image name → target descriptor, with labels.

One JSON file per namespace under ROOT/images/, changed under an flock and replaced
atomically, so shimd and an in-process caller can share it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shim import namespaces
from shim.errors import AlreadyExists, InvalidArgument, NotFound
from shim.images.oci import Descriptor


@dataclass
class Image:
    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target.to_dict(), "labels": self.labels,
                "created_at": self.created_at, "updated_at": self.updated_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Image:
        return cls(data["name"], Descriptor.from_dict(data["target"]), dict(data["labels"]),
                   float(data["created_at"]), float(data["updated_at"]))


class ImageStoreAPI(Protocol):
    """What distribution and import/export need of an image store (local or over gRPC)."""

    def get(self, namespace: str, name: str) -> Image: ...

    def put(self, namespace: str, image: Image) -> Image: ...


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "images"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    def namespaces(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.json"))

    @contextlib.contextmanager
    def _locked(self, namespace: str) -> Iterator[dict[str, Any]]:
        namespaces.validate(namespace)
        path = self.root / f"{namespace}.json"
        with self._lock:
            fd = os.open(self.root / f".{namespace}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    data: dict[str, Any] = json.loads(path.read_text())
                except FileNotFoundError:
                    data = {}
                before = json.dumps(data, sort_keys=True)
                yield data
                if json.dumps(data, sort_keys=True) != before:
                    tmp = path.with_name(f".{namespace}.{os.getpid()}.{threading.get_ident()}.tmp")
                    with open(tmp, "w") as f:
                        json.dump(data, f, sort_keys=True)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, path)
            finally:
                os.close(fd)

    def get(self, namespace: str, name: str) -> Image:
        with self._locked(namespace) as data:
            if name not in data:
                raise NotFound(f"image {name!r} not found in namespace {namespace!r}")
            return Image.from_dict(data[name])

    def list(self, namespace: str) -> list[Image]:
        with self._locked(namespace) as data:
            return [Image.from_dict(v) for _, v in sorted(data.items())]

    def create(self, namespace: str, image: Image) -> Image:
        if not image.name:
            raise InvalidArgument("an image needs a name")
        with self._locked(namespace) as data:
            if image.name in data:
                raise AlreadyExists(f"image {image.name!r} already exists")
            now = time.time()
            image.created_at = image.updated_at = now
            data[image.name] = image.to_dict()
            return image

    def update(self, namespace: str, image: Image) -> Image:
        with self._locked(namespace) as data:
            if image.name not in data:
                raise NotFound(f"image {image.name!r} not found in namespace {namespace!r}")
            old = Image.from_dict(data[image.name])
            image.created_at = old.created_at
            image.updated_at = time.time()
            data[image.name] = image.to_dict()
            return image

    def put(self, namespace: str, image: Image) -> Image:
        """Create or retarget (what a pull, a load or a tag does)."""
        with self._locked(namespace) as data:
            now = time.time()
            old = data.get(image.name)
            image.created_at = float(old["created_at"]) if old else now
            image.updated_at = now
            data[image.name] = image.to_dict()
            return image

    def delete(self, namespace: str, name: str) -> None:
        with self._locked(namespace) as data:
            if name not in data:
                raise NotFound(f"image {name!r} not found in namespace {namespace!r}")
            del data[name]
