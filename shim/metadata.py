"""The container metadata store: one JSON file per container, per namespace.

`ROOT/metadata/NAMESPACE/containers/ID.json`, written atomically (temporary file,
fsync, rename), so a crash leaves either the old record or the new one. The store is
the source of truth for containers across shimd restarts; tasks live in the state dir.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shim.errors import AlreadyExists, InvalidArgument, NotFound

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,75}$")


def validate_id(value: str, what: str = "container id") -> str:
    if not _ID.match(value):
        raise InvalidArgument(
            f"{what} {value!r} is invalid: use 1-76 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass
class ContainerRecord:
    id: str
    spec: dict[str, Any]
    image: str = ""
    snapshot_key: str = ""
    snapshotter: str = ""
    runtime: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    """Nanoseconds since the epoch."""
    updated_at: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerRecord:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class ContainerStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "metadata"
        self._lock = threading.Lock()

    def _dir(self, namespace: str) -> Path:
        return self.root / namespace / "containers"

    def _path(self, namespace: str, container_id: str) -> Path:
        return self._dir(namespace) / f"{validate_id(container_id)}.json"

    def create(self, namespace: str, record: ContainerRecord) -> ContainerRecord:
        with self._lock:
            path = self._path(namespace, record.id)
            if path.exists():
                raise AlreadyExists(
                    f"container {record.id!r} already exists in namespace {namespace!r}: "
                    "pick another id or delete it first"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            record.created_at = record.updated_at = time.time_ns()
            atomic_write_json(path, asdict(record))
            return record

    def get(self, namespace: str, container_id: str) -> ContainerRecord:
        path = self._path(namespace, container_id)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotFound(
                f"container {container_id!r} not found in namespace {namespace!r}"
            ) from None
        return ContainerRecord.from_json(data)

    def list(self, namespace: str) -> list[ContainerRecord]:
        directory = self._dir(namespace)
        if not directory.is_dir():
            return []
        out = []
        for path in sorted(directory.glob("*.json")):
            try:
                out.append(ContainerRecord.from_json(json.loads(path.read_text())))
            except FileNotFoundError:
                continue
        return out

    def update(self, namespace: str, record: ContainerRecord) -> ContainerRecord:
        with self._lock:
            path = self._path(namespace, record.id)
            if not path.exists():
                raise NotFound(f"container {record.id!r} not found in namespace {namespace!r}")
            record.updated_at = time.time_ns()
            atomic_write_json(path, asdict(record))
            return record

    def delete(self, namespace: str, container_id: str) -> None:
        with self._lock:
            try:
                self._path(namespace, container_id).unlink()
            except FileNotFoundError:
                raise NotFound(
                    f"container {container_id!r} not found in namespace {namespace!r}"
                ) from None
