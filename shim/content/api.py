"""What distribution and import/export need of a content store.

The local ContentStore satisfies it, and so does the gRPC client of the content
service (shim.images.remote), so the same pull, push, load and save code runs in
shimd, in berthd and in shimctl.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from shim.content.store import Info, IngestStatus


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
