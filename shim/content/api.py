"""What distribution and import/export need of a content store.

The local ContentStore satisfies it, and so does the gRPC client of the content
service (shim.images.remote), so the same pull, push, load and save code runs in
shimd, in berthd and in shimctl.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Protocol

from shim.content.store import Info, IngestStatus
from shim.errors import AlreadyExists, Unavailable

WRITE_BLOB_WAIT = 60.0
"""Seconds write_blob waits for another writer of the same blob before it gives up."""


class ContentWriter(Protocol):
    ref: str
    offset: int

    def write(self, data: bytes) -> int: ...

    def truncate(self, size: int = 0) -> None: ...

    def commit(self, size: int = 0, expected: str = "",
               labels: dict[str, str] | None = None) -> str: ...

    def close(self) -> None: ...


class ContentAPI(Protocol):
    def exists(self, digest: str) -> bool: ...

    def info(self, digest: str) -> Info: ...

    def read(self, digest: str, offset: int = 0, size: int = 0,
             chunk: int = ...) -> Iterator[bytes]: ...

    def read_bytes(self, digest: str) -> bytes: ...

    def writer(self, ref: str, total: int = 0, expected: str = "") -> ContentWriter: ...

    def write_blob(self, data: bytes, expected: str = "", ref: str = "",
                   labels: dict[str, str] | None = None) -> str: ...

    def status(self, ref: str) -> IngestStatus: ...

    def delete(self, digest: str) -> None: ...

    def update(self, digest: str, labels: dict[str, str]) -> Info: ...


def write_blob(content: ContentAPI, data: bytes, expected: str = "", ref: str = "",
               labels: dict[str, str] | None = None) -> str:
    """Store `data` in one call; a blob that exists already is left as it is.

    When another writer holds the same ingest (two pulls of one manifest at once), wait
    for its commit, which gives us the blob, rather than fail.
    """
    digest = expected or "sha256:" + hashlib.sha256(data).hexdigest()
    if content.exists(digest):
        if labels:
            content.update(digest, labels)
        return digest
    deadline = time.monotonic() + WRITE_BLOB_WAIT
    while True:
        try:
            w = content.writer(ref or f"write-{digest}", len(data), digest)
            try:
                w.truncate(0)
                w.write(data)
                return w.commit(len(data), digest, labels)
            finally:
                w.close()
        except AlreadyExists:
            return digest
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
            if content.exists(digest):
                return digest
