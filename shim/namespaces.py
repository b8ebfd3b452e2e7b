"""containerd-style namespaces: every call is scoped by the `berth-namespace` gRPC metadata."""

from __future__ import annotations

import re

import grpc

from shim.errors import InvalidArgument

METADATA_KEY = "berth-namespace"
DEFAULT = "default"
_VALID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,74}[A-Za-z0-9])?$")


def validate(namespace: str) -> str:
    if not _VALID.match(namespace):
        raise InvalidArgument(
            f"namespace {namespace!r} is invalid: use letters, digits, '.', '_' and '-', "
            "starting and ending with a letter or digit, at most 76 characters"
        )
    return namespace


def from_context(context: grpc.ServicerContext) -> str:
    """The namespace a call is scoped to; DEFAULT when the client sent none."""
    for key, value in context.invocation_metadata():
        if key == METADATA_KEY:
            return validate(str(value))
    return DEFAULT


def metadata(namespace: str) -> tuple[tuple[str, str], ...]:
    """The call metadata a client sends to scope a call to `namespace`."""
    return ((METADATA_KEY, validate(namespace)),)
