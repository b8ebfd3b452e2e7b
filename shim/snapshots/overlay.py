"""The overlay snapshotter, on containerd's model.

A committed snapshot is a read-only directory (an image layer, unpacked once, named by
its chain ID); an active snapshot is an empty upperdir + workdir on top of a parent
chain; a view is a read-only stack of a chain. Mounts are handed back as OCI mount
dicts, never mounted here: the runtime mounts them in the container's namespace.

Layout under ROOT/snapshots:
  metadata.json        every snapshot by key: id, kind, parent, labels, times
  lock                 flock held while metadata changes (shared by processes)
  snapshots/ID/fs      the snapshot's own files (a layer, or an upperdir)
  snapshots/ID/work    overlay workdir of an active snapshot
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from shim.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

MAX_MOUNT_DATA = 4096
"""mount(2) copies at most a page of options: the lowerdir list must fit in it."""

Mount = dict[str, Any]
"""An OCI mount: {"type": ..., "source": ..., "options": [...]}."""


class Kind(StrEnum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


@dataclass
class SnapshotInfo:
    name: str
    kind: Kind
    parent: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class Usage:
    size: int
    """Bytes of disk blocks the snapshot's own directory holds."""
    inodes: int


def _disk_usage(path: Path) -> Usage:
    """Blocks and inodes under `path`, each inode counted once (hard links)."""
    seen: set[tuple[int, int]] = set()
    size = 0

    def account(full: str) -> None:
        nonlocal size
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(full)
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                size += st.st_blocks * 512

    account(str(path))
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            account(os.path.join(dirpath, name))
    return Usage(size, len(seen))


class OverlaySnapshotter:
    """Snapshots by key; safe between threads (a lock) and processes (flock)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "snapshots"
        self.dirs = self.root / "snapshots"
        self.dirs.mkdir(parents=True, exist_ok=True)
        self._meta_path = self.root / "metadata.json"
        self._lock_path = self.root / "lock"
        self._thread_lock = threading.RLock()

    # -- metadata ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        with self._thread_lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                meta = self._load()
                before = json.dumps(meta, sort_keys=True)
                yield meta
                if json.dumps(meta, sort_keys=True) != before:
                    self._save(meta)
            finally:
                os.close(fd)

    def _load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._meta_path.read_text())
        except FileNotFoundError:
            data = {}
        data.setdefault("next_id", 1)
        data.setdefault("snapshots", {})
        return data

    def _save(self, meta: dict[str, Any]) -> None:
        tmp = self._meta_path.with_name(f".metadata.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._meta_path)

    @staticmethod
    def _get(meta: dict[str, Any], key: str) -> dict[str, Any]:
        try:
            record: dict[str, Any] = meta["snapshots"][key]
        except KeyError:
            raise NotFound(f"snapshot {key!r} not found") from None
        return record

    def _fs(self, record: dict[str, Any]) -> Path:
        return self.dirs / str(record["id"]) / "fs"

    def _work(self, record: dict[str, Any]) -> Path:
        return self.dirs / str(record["id"]) / "work"

    def _chain(self, meta: dict[str, Any], parent: str) -> list[dict[str, Any]]:
        chain = []
        while parent:
            record = self._get(meta, parent)
            chain.append(record)
            parent = record["parent"]
        return chain

    @staticmethod
    def _info(key: str, record: dict[str, Any]) -> SnapshotInfo:
        return SnapshotInfo(key, Kind(record["kind"]), record["parent"],
                            dict(record.get("labels", {})), record["created_at"],
                            record["updated_at"])

    # -- operations -------------------------------------------------------------------

    def _create(self, kind: Kind, key: str, parent: str, labels: dict[str, str] | None,
                check_mount: bool = True) -> list[Mount]:
        if not key:
            raise InvalidArgument("a snapshot needs a non-empty key")
        with self._locked() as meta:
            if key in meta["snapshots"]:
                raise AlreadyExists(f"snapshot {key!r} already exists")
            if parent:
                prec = self._get(meta, parent)
                if prec["kind"] != Kind.COMMITTED.value:
                    raise FailedPrecondition(
                        f"parent {parent!r} of {key!r} is {prec['kind']}, not committed")
            sid = meta["next_id"]
            meta["next_id"] = sid + 1
            now = time.time()
            record = {"id": sid, "kind": kind.value, "parent": parent,
                      "labels": dict(labels or {}), "created_at": now, "updated_at": now}
            base = self.dirs / str(sid)
            shutil.rmtree(base, ignore_errors=True)
            (base / "fs").mkdir(parents=True)
            os.chmod(base / "fs", 0o755)
            if kind == Kind.ACTIVE and parent:
                (base / "work").mkdir()
            meta["snapshots"][key] = record
            mounts = self._mounts(meta, record)
            data = ",".join(o for m in mounts for o in m["options"])
            if check_mount and len(data) >= MAX_MOUNT_DATA:
                del meta["snapshots"][key]
                shutil.rmtree(base, ignore_errors=True)
                raise FailedPrecondition(
                    f"snapshot {key!r}: the overlay options of {len(self._chain(meta, parent))} "
                    f"layers take {len(data)} bytes, over the kernel's {MAX_MOUNT_DATA}; "
                    "flatten the image or use a shorter state root")
            return mounts

    def prepare(self, key: str, parent: str = "", labels: dict[str, str] | None = None,
                check_mount: bool = True) -> list[Mount]:
        """A writable snapshot on top of `parent` (committed); its mounts.

        `check_mount=False` is for unpacking, which writes to upper_dir() and never
        mounts: a chain too deep for one overlay mount can still be unpacked.
        """
        return self._create(Kind.ACTIVE, key, parent, labels, check_mount)

    def view(self, key: str, parent: str = "",
             labels: dict[str, str] | None = None) -> list[Mount]:
        """A read-only snapshot of `parent`; its mounts."""
        return self._create(Kind.VIEW, key, parent, labels)

    def mounts(self, key: str) -> list[Mount]:
        with self._locked() as meta:
            return self._mounts(meta, self._get(meta, key))

    def _mounts(self, meta: dict[str, Any], record: dict[str, Any]) -> list[Mount]:
        chain = self._chain(meta, record["parent"])
        kind = Kind(record["kind"])
        if kind == Kind.COMMITTED:
            raise FailedPrecondition("a committed snapshot has no mounts; make a view of it")
        if kind == Kind.VIEW:
            if not chain:
                return [{"type": "bind", "source": str(self._fs(record)),
                         "options": ["rbind", "ro"]}]
            if len(chain) == 1:
                return [{"type": "bind", "source": str(self._fs(chain[0])),
                         "options": ["rbind", "ro"]}]
            lower = ":".join(str(self._fs(r)) for r in chain)
            return [{"type": "overlay", "source": "overlay", "options": [f"lowerdir={lower}"]}]
        if not chain:
            return [{"type": "bind", "source": str(self._fs(record)),
                     "options": ["rbind", "rw"]}]
        lower = ":".join(str(self._fs(r)) for r in chain)
        return [{"type": "overlay", "source": "overlay", "options": [
            "index=off",
            f"workdir={self._work(record)}",
            f"upperdir={self._fs(record)}",
            f"lowerdir={lower}",
        ]}]

    def upper_dir(self, key: str) -> Path:
        """The directory an active snapshot's own changes live in (where a layer is applied)."""
        with self._locked() as meta:
            record = self._get(meta, key)
            if record["kind"] != Kind.ACTIVE.value:
                raise FailedPrecondition(f"snapshot {key!r} is {record['kind']}, not active")
            return self._fs(record)

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        """Turn active snapshot `key` into committed snapshot `name` (read-only from now)."""
        with self._locked() as meta:
            record = self._get(meta, key)
            if record["kind"] != Kind.ACTIVE.value:
                raise FailedPrecondition(f"snapshot {key!r} is {record['kind']}, not active")
            if name in meta["snapshots"]:
                raise AlreadyExists(f"snapshot {name!r} already exists")
            shutil.rmtree(self._work(record), ignore_errors=True)
            del meta["snapshots"][key]
            record["kind"] = Kind.COMMITTED.value
            record["updated_at"] = time.time()
            if labels:
                record["labels"].update(labels)
            meta["snapshots"][name] = record

    def remove(self, key: str) -> None:
        """Remove a snapshot that nothing is built on."""
        with self._locked() as meta:
            record = self._get(meta, key)
            children = [k for k, r in meta["snapshots"].items() if r["parent"] == key]
            if children:
                raise FailedPrecondition(
                    f"snapshot {key!r} has children: {', '.join(sorted(children))}")
            del meta["snapshots"][key]
            self._save(meta)
            shutil.rmtree(self.dirs / str(record["id"]), ignore_errors=True)

    def stat(self, key: str) -> SnapshotInfo:
        with self._locked() as meta:
            return self._info(key, self._get(meta, key))

    def exists(self, key: str) -> bool:
        with self._locked() as meta:
            return key in meta["snapshots"]

    def update(self, key: str, labels: dict[str, str], replace: bool = False) -> SnapshotInfo:
        with self._locked() as meta:
            record = self._get(meta, key)
            merged = {} if replace else dict(record.get("labels", {}))
            for k, v in labels.items():
                if v:
                    merged[k] = v
                else:
                    merged.pop(k, None)
            record["labels"] = merged
            record["updated_at"] = time.time()
            return self._info(key, record)

    def list(self) -> list[SnapshotInfo]:
        with self._locked() as meta:
            return [self._info(k, r) for k, r in sorted(meta["snapshots"].items())]

    def usage(self, key: str) -> Usage:
        with self._locked() as meta:
            record = self._get(meta, key)
        return _disk_usage(self._fs(record))

    def total_usage(self) -> Usage:
        """Disk used by every snapshot together (hard links counted once)."""
        return _disk_usage(self.dirs)


