"""The lifecycle manager's error kinds, one table, mapped to gRPC status codes at the edge.

Services raise these; the server turns them into statuses (`status_code`), and the
client turns statuses back into the same exceptions (`from_status`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import grpc


class ShimError(Exception):
    """Base of the lifecycle manager's errors."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN


class NotFound(ShimError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ShimError):
    code = grpc.StatusCode.ALREADY_EXISTS


class InvalidArgument(ShimError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(ShimError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ShimError):
    code = grpc.StatusCode.UNAVAILABLE


class Internal(ShimError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[ShimError]] = {
    cls.code: cls
    for cls in (NotFound, AlreadyExists, InvalidArgument, FailedPrecondition, Unavailable, Internal)
}


def from_status(code: grpc.StatusCode, message: str) -> ShimError:
    """The exception a client raises for a status the server sent."""
    return _BY_CODE.get(code, ShimError)(message)


def from_rpc_error(exc: grpc.RpcError) -> ShimError:
    """The exception a client raises for a failed call."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return from_status(code, details or str(code))


T = TypeVar("T")


def translate_rpc_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorate a client method: gRPC errors become this module's exceptions."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    return call
