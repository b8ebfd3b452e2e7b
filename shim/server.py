"""The gRPC server of shimd: the services of SERVICE_MODULES plus grpc.health.v1.

Errors of `shim.errors` raised by a service become gRPC statuses here, in one place;
anything else becomes INTERNAL with its message (and a traceback in the log). The
socket is a unix socket created with mode 0600, or 0660 and a group when one is given.
"""

from __future__ import annotations

import grp
import importlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from shim.errors import ShimError, Unavailable
from shim.services import SERVICE_MODULES, ServiceContext

log = logging.getLogger(__name__)

MAX_WORKERS = 256
"""Wait and Subscribe hold a worker each for as long as they last."""


def _abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, ShimError):
        context.abort(exc.code, str(exc))
    log.exception("internal error")
    context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


def _unary(fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError) or type(exc).__name__ == "_AbortionException":
                raise
            _abort(context, exc)

    return call


def _stream(fn: Callable[[Any, grpc.ServicerContext], Iterator[Any]]) -> Callable[..., Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(request, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError) or type(exc).__name__ == "_AbortionException":
                raise
            _abort(context, exc)

    return call


class ErrorInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _stream(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _claim_socket(path: Path) -> None:
    """Remove a stale socket left by a dead shimd; refuse if a live one answers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise Unavailable(f"another shimd already serves {path}: stop it or choose another --address")


class ShimServer:
    """shimd's services on one unix socket; start() returns once it accepts calls."""

    def __init__(self, ctx: ServiceContext, address: Path, group: str = "") -> None:
        self.ctx = ctx
        self.address = address
        self.group = group
        self.health = health.HealthServicer()
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="grpc"),
            interceptors=[ErrorInterceptor()],
            options=[("grpc.so_reuseport", 0)],
        )

    def start(self) -> ShimServer:
        self.ctx.root.mkdir(parents=True, exist_ok=True)
        self.ctx.state.mkdir(parents=True, exist_ok=True)
        _claim_socket(self.address)
        for name in SERVICE_MODULES:
            module = importlib.import_module(name)
            module.register(self.server, self.ctx)
            log.debug("registered %s", name)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        old_umask = os.umask(0o177)
        try:
            self.server.add_insecure_port(f"unix:{self.address}")
            self.server.start()
        finally:
            os.umask(old_umask)
        if self.group:
            os.chown(self.address, -1, grp.getgrnam(self.group).gr_gid)
            os.chmod(self.address, 0o660)
        else:
            os.chmod(self.address, 0o600)
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info("shimd serves %s (root %s, state %s, runtime %s)", self.address,
                 self.ctx.root, self.ctx.state, self.ctx.runtime)
        return self

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving; monitors and containers keep running."""
        self.health.enter_graceful_shutdown()
        bus = self.ctx.shared.get("events")
        close = getattr(bus, "close", None)
        if close is not None:
            close()
        self.server.stop(grace).wait()
        tasks_close = getattr(self.ctx.shared.get("tasks"), "close", None)
        if tasks_close is not None:
            tasks_close()
        self.address.unlink(missing_ok=True)

    def wait(self, timeout: float | None = None) -> bool:
        result: bool = self.server.wait_for_termination(timeout)
        return result
