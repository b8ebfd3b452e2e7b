"""The lifecycle manager's error kinds, one table, mapped to gRPC status codes at the edge.

Services raise these; the server turns them into statuses (`status_code`), and the
client turns statuses back into the same exceptions (`from_status`).
"""

from __future__ import annotations

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
