"""Content-addressed blob store of shimd: blobs by digest, written through resumable ingests."""

from shim.content.digest import Digest, digest_bytes, parse_digest
from shim.content.store import ContentStore, Info, IngestStatus, Writer

__all__ = [
    "ContentStore",
    "Digest",
    "Info",
    "IngestStatus",
    "Writer",
    "digest_bytes",
    "parse_digest",
]
