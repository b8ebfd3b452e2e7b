"""Digests as the OCI image spec defines them: `algorithm:hex`, sha256 only (sha512 read too)."""

from __future__ import annotations

import hashlib
import re

from shim.errors import InvalidArgument

Digest = str
"""A validated digest string such as `sha256:e3b0...`."""

_HEX_LEN = {"sha256": 64, "sha512": 128}
_FORM = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-f0-9]+)$")


def parse_digest(value: str) -> tuple[str, str]:
    """Split and check a digest; InvalidArgument names what is wrong with it."""
    match = _FORM.match(value)
    if not match:
        raise InvalidArgument(f"digest {value!r} is not of the form algorithm:hex")
    algorithm, hexpart = match.group(1), match.group(2)
    want = _HEX_LEN.get(algorithm)
    if want is None:
        raise InvalidArgument(f"digest {value!r}: unsupported algorithm {algorithm!r}")
    if len(hexpart) != want:
        raise InvalidArgument(
            f"digest {value!r}: {algorithm} needs {want} hex digits, got {len(hexpart)}"
        )
    return algorithm, hexpart


def hasher(digest: str) -> hashlib._Hash:
    """A fresh hash object of the algorithm `digest` uses."""
    algorithm, _ = parse_digest(digest)
    return hashlib.new(algorithm)


def digest_bytes(data: bytes) -> Digest:
    return "sha256:" + hashlib.sha256(data).hexdigest()
