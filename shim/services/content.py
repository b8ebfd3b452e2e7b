"""Content: the gRPC edge of `shim.content.ContentStore` (published as ctx.shared["content"])."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from shim.api.v1 import content_pb2, content_pb2_grpc
from shim.content import ContentStore, Writer
from shim.errors import InvalidArgument, ShimError
from shim.services import ServiceContext
from shim.services.convert import info_pb, ingest_pb, label_update
from shim.services.events import matches, parse_filters

READ_CHUNK = 1 << 20


class ContentServicer(content_pb2_grpc.ContentServicer):  # type: ignore[misc]
    def __init__(self, store: ContentStore) -> None:
        self.store = store

    def Info(self, request: Any, context: grpc.ServicerContext) -> Any:
        return content_pb2.ContentInfoResponse(info=info_pb(self.store.info(request.digest)))

    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        labels, replace = label_update(self.store.info(request.info.digest).labels,
                                       dict(request.info.labels), list(request.update_mask))
        info = self.store.update(request.info.digest, labels, replace=replace)
        return content_pb2.UpdateContentResponse(info=info_pb(info))

    def List(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        filters = parse_filters(list(request.filters))
        batch = []
        for info in self.store.list():
            fields = {"digest": info.digest, "size": str(info.size)}
            fields.update({f"labels.{k}": v for k, v in info.labels.items()})
            if matches(filters, fields):
                batch.append(info_pb(info))
            if len(batch) >= 100:
                yield content_pb2.ListContentResponse(info=batch)
                batch = []
        if batch:
            yield content_pb2.ListContentResponse(info=batch)

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.store.delete(request.digest)
        return empty_pb2.Empty()

    def Read(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        offset = request.offset
        for chunk in self.store.read(request.digest, request.offset, request.size, READ_CHUNK):
            yield content_pb2.ReadContentResponse(offset=offset, data=chunk)
            offset += len(chunk)

    def Status(self, request: Any, context: grpc.ServicerContext) -> Any:
        return content_pb2.IngestStatusResponse(status=ingest_pb(self.store.status(request.ref)))

    def ListStatuses(self, request: Any, context: grpc.ServicerContext) -> Any:
        filters = parse_filters(list(request.filters))
        return content_pb2.ListIngestsResponse(statuses=[
            ingest_pb(s) for s in self.store.list_statuses()
            if matches(filters, {"ref": s.ref, "expected": s.expected})])

    def Abort(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.store.abort(request.ref)
        return empty_pb2.Empty()

    def Write(self, request_iterator: Iterator[Any],
              context: grpc.ServicerContext) -> Iterator[Any]:
        """One ingest per stream; errors end the stream with their status."""
        writer: Writer | None = None
        try:
            for req in request_iterator:
                if writer is None:
                    writer = self.store.writer(req.ref, req.total, req.expected)
                if req.action == content_pb2.WRITE or (req.action == content_pb2.COMMIT
                                                       and req.data):
                    self._append(writer, req)
                if req.action == content_pb2.COMMIT:
                    digest = writer.commit(req.total, req.expected, dict(req.labels))
                    yield content_pb2.WriteContentResponse(
                        action=req.action, offset=writer.offset, total=req.total, digest=digest)
                    return
                st = writer.status() if req.action == content_pb2.STAT else None
                yield content_pb2.WriteContentResponse(
                    action=req.action, offset=writer.offset, total=writer.total,
                    digest=writer.digest(),
                    started_at=ingest_pb(st).started_at if st else None)
        except ShimError as exc:
            context.abort(exc.code, str(exc))
        finally:
            if writer is not None:
                writer.close()

    @staticmethod
    def _append(writer: Writer, req: Any) -> None:
        if req.offset != writer.offset:
            if req.offset != 0:
                raise InvalidArgument(f"write to ingest {req.ref or writer.ref!r} at offset "
                                      f"{req.offset}, but its data ends at {writer.offset}")
            writer.truncate(0)
        if req.data:
            writer.write(req.data)


def register(server: grpc.Server, ctx: ServiceContext) -> None:
    store = ContentStore(ctx.root)
    ctx.shared["content"] = store
    content_pb2_grpc.add_ContentServicer_to_server(ContentServicer(store), server)
