"""The content store: blobs addressed by digest, verified before they are committed.

Layout under ROOT/content:
  blobs/sha256/HEX          committed blobs, read-only, never rewritten
  labels/sha256/HEX.json    labels of a blob (optional)
  ingest/KEY/{ref,data,meta.json}  one in-progress write per ref, KEY = sha256(ref)

A write goes through an ingest named by a caller-chosen `ref`. The ingest keeps its
bytes on disk, so a writer that dies can be reopened with the same ref and goes on from
where the data ends (resumable pulls). `commit` checks size and digest, fsyncs, then
renames the data into place: a blob either exists whole and verified or not at all.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from shim.content.digest import Digest, hasher, parse_digest
from shim.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable

CHUNK = 1 << 20


@dataclass
class Info:
    digest: Digest
    size: int
    created_at: float
    updated_at: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class IngestStatus:
    ref: str
    offset: int
    total: int
    expected: str
    started_at: float
    updated_at: float


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Writer:
    """One open ingest. Not thread-safe; hold it from one thread, then commit or close."""

    def __init__(self, store: ContentStore, ref: str, directory: Path, fd: int,
                 meta: dict[str, object]) -> None:
        self._store = store
        self.ref = ref
        self._dir = directory
        self._fd = fd
        self._meta = meta
        self._hash = hashlib.sha256()
        self.offset = 0
        self._closed = False
        self._rehash()

    @property
    def total(self) -> int:
        total = self._meta.get("total") or 0
        return total if isinstance(total, int) else 0

    @property
    def expected(self) -> str:
        return str(self._meta.get("expected") or "")

    def _rehash(self) -> None:
        """Hash what a previous writer left, so that a resumed ingest verifies as a whole."""
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._hash = hashlib.sha256()
        self.offset = 0
        while chunk := os.read(self._fd, CHUNK):
            self._hash.update(chunk)
            self.offset += len(chunk)

    def truncate(self, size: int = 0) -> None:
        """Drop data past `size` (0: start over), e.g. when a server ignores a Range request."""
        os.ftruncate(self._fd, size)
        self._rehash()

    def write(self, data: bytes) -> int:
        if self._closed:
            raise FailedPrecondition(f"ingest {self.ref!r} is closed")
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._hash.update(data)
        self.offset += len(data)
        return len(data)

    def digest(self) -> Digest:
        return "sha256:" + self._hash.hexdigest()

    def status(self) -> IngestStatus:
        return self._store.status(self.ref)

    def commit(self, size: int = 0, expected: str = "",
               labels: dict[str, str] | None = None) -> Digest:
        """Verify and commit. A mismatch discards the ingest: bad bytes are never resumed."""
        if self._closed:
            raise FailedPrecondition(f"ingest {self.ref!r} is closed")
        size = size or self.total
        expected = expected or self.expected
        actual = self.digest()
        if size and self.offset != size:
            self._discard()
            raise FailedPrecondition(
                f"ingest {self.ref!r}: got {self.offset} bytes, expected {size}"
            )
        if expected and expected != actual:
            parse_digest(expected)
            if not expected.startswith("sha256:"):
                actual = self._hash_other(expected)
            if expected != actual:
                self._discard()
                raise FailedPrecondition(
                    f"ingest {self.ref!r}: digest mismatch, expected {expected}, got {actual}"
                )
        os.fsync(self._fd)
        target = self._store.blob_path(actual)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.fchmod(self._fd, 0o444)
            os.rename(self._dir / "data", target)
            _fsync_dir(target.parent)
        self._discard()
        if labels:
            self._store.update(actual, labels)
        return actual

    def _hash_other(self, expected: str) -> str:
        h = hasher(expected)
        os.lseek(self._fd, 0, os.SEEK_SET)
        while chunk := os.read(self._fd, CHUNK):
            h.update(chunk)
        return f"{h.name}:{h.hexdigest()}"

    def _discard(self) -> None:
        """Remove the ingest while still holding its lock, so no writer can take it over."""
        self._store._remove_ingest(self._dir)
        self.close()

    def close(self) -> None:
        """Release the ingest, keeping its data for a later writer with the same ref."""
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ContentStore:
    """Blobs under ROOT/content; safe to share between threads and processes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "content"
        self.blobs = self.root / "blobs"
        self.ingests = self.root / "ingest"
        self.labels_dir = self.root / "labels"
        for d in (self.blobs / "sha256", self.ingests, self.labels_dir / "sha256"):
            d.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        algorithm, hexpart = parse_digest(digest)
        return self.blobs / algorithm / hexpart

    def exists(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def _labels_path(self, digest: str) -> Path:
        algorithm, hexpart = parse_digest(digest)
        return self.labels_dir / algorithm / (hexpart + ".json")

    def info(self, digest: str) -> Info:
        path = self.blob_path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None
        labels: dict[str, str] = {}
        updated = st.st_mtime
        lp = self._labels_path(digest)
        with contextlib.suppress(FileNotFoundError):
            labels = json.loads(lp.read_text())
            updated = max(updated, lp.stat().st_mtime)
        return Info(digest, st.st_size, st.st_mtime, updated, labels)

    def update(self, digest: str, labels: dict[str, str], replace: bool = False) -> Info:
        """Set labels (merged; an empty value deletes a key) or replace them all."""
        current = self.info(digest).labels
        merged = {} if replace else dict(current)
        for key, value in labels.items():
            if value:
                merged[key] = value
            else:
                merged.pop(key, None)
        _atomic_write(self._labels_path(digest), json.dumps(merged, sort_keys=True).encode())
        return self.info(digest)

    def list(self) -> list[Info]:
        out = []
        for algodir in sorted(self.blobs.iterdir()):
            for blob in sorted(algodir.iterdir()):
                if blob.name.startswith("."):
                    continue
                with contextlib.suppress(NotFound):
                    out.append(self.info(f"{algodir.name}:{blob.name}"))
        return out

    def delete(self, digest: str) -> None:
        try:
            self.blob_path(digest).unlink()
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None
        with contextlib.suppress(FileNotFoundError):
            self._labels_path(digest).unlink()

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None

    def read(self, digest: str, offset: int = 0, size: int = 0,
             chunk: int = CHUNK) -> Iterator[bytes]:
        """Stream a blob from `offset`; `size` 0 reads to the end."""
        if offset < 0 or size < 0:
            raise InvalidArgument(f"read of {digest}: negative offset or size")
        with self.open(digest) as f:
            f.seek(offset)
            left = size if size else -1
            while left != 0:
                want = chunk if left < 0 else min(chunk, left)
                data = f.read(want)
                if not data:
                    break
                if left > 0:
                    left -= len(data)
                yield data

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    # -- ingest -----------------------------------------------------------------------

    def _ingest_dir(self, ref: str) -> Path:
        if not ref:
            raise InvalidArgument("an ingest needs a non-empty ref")
        return self.ingests / hashlib.sha256(ref.encode()).hexdigest()

    def writer(self, ref: str, total: int = 0, expected: str = "") -> Writer:
        """Open (or reopen, to resume) the ingest `ref`.

        Raises AlreadyExists when `expected` is already committed, Unavailable when
        another writer holds the same ref. A changed `expected` starts the data over.
        """
        if expected:
            parse_digest(expected)
            if self.exists(expected):
                raise AlreadyExists(f"content {expected} already exists")
        directory = self._ingest_dir(ref)
        fd = self._lock_ingest(directory, ref)
        if expected and self.exists(expected):
            os.close(fd)
            raise AlreadyExists(f"content {expected} already exists")
        meta_path = directory / "meta.json"
        meta: dict[str, object] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            meta = json.loads(meta_path.read_text())
        now = time.time()
        if (expected and meta.get("expected") and meta.get("expected") != expected) or (
            total and meta.get("total") and meta.get("total") != total
        ):
            os.ftruncate(fd, 0)
            meta = {}
        meta.setdefault("started_at", now)
        meta["ref"] = ref
        meta["expected"] = expected or meta.get("expected", "")
        meta["total"] = total or meta.get("total", 0)
        _atomic_write(meta_path, json.dumps(meta).encode())
        os.lseek(fd, 0, os.SEEK_END)
        w = Writer(self, ref, directory, fd, meta)
        os.lseek(fd, 0, os.SEEK_END)
        return w

    @staticmethod
    def _lock_ingest(directory: Path, ref: str) -> int:
        """Open and lock the ingest's data file; the lock is held by whoever writes it.

        A writer that committed or discarded the ingest meanwhile has removed (or renamed
        into blobs/) the file we opened: then start over, never write to that inode.
        """
        data = directory / "data"
        for _ in range(1000):
            directory.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise Unavailable(f"ingest {ref!r} is locked by another writer") from None
                raise
            mine = os.fstat(fd)
            try:
                current = os.stat(data)
            except FileNotFoundError:
                current = None
            if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev,
                                                                           mine.st_ino):
                return fd
            os.close(fd)
        raise Unavailable(f"ingest {ref!r} keeps changing under us")

    def status(self, ref: str) -> IngestStatus:
        directory = self._ingest_dir(ref)
        try:
            meta = json.loads((directory / "meta.json").read_text())
            st = (directory / "data").stat()
        except (FileNotFoundError, ValueError):
            raise NotFound(f"ingest {ref!r} not found") from None
        return IngestStatus(ref, st.st_size, int(meta.get("total") or 0),
                            str(meta.get("expected") or ""), float(meta["started_at"]),
                            st.st_mtime)

    def list_statuses(self) -> builtins.list[IngestStatus]:
        out = []
        for directory in sorted(self.ingests.iterdir()):
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError, NotFound):
                ref = json.loads((directory / "meta.json").read_text())["ref"]
                out.append(self.status(ref))
        return out

    def abort(self, ref: str) -> None:
        directory = self._ingest_dir(ref)
        if not directory.exists():
            raise NotFound(f"ingest {ref!r} not found")
        self._remove_ingest(directory)

    def _remove_ingest(self, directory: Path) -> None:
        for name in ("data", "meta.json"):
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
        with contextlib.suppress(FileNotFoundError, OSError):
            directory.rmdir()

    def write_blob(self, data: bytes, expected: str = "", ref: str = "",
                   labels: dict[str, str] | None = None) -> Digest:
        """Store `data` in one call (see shim.content.api.write_blob)."""
        from shim.content.api import write_blob  # api imports this module

        return write_blob(self, data, expected, ref, labels)
