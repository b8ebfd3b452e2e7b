"""Events: one ordered stream per shimd, with containerd-like filters.

`EventBus` is the local implementation: `publish()` stamps each event with the next
sequence number and hands it, under one lock, to every subscriber whose filters match,
so all subscribers see events in the same order. Filters are strings of
`field OP value` clauses joined by ',' (all must hold), OP being `==`, `!=` or `~=`
(prefix); a list of filters matches when any filter does.
"""

from __future__ import annotations

import collections
import queue
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from shim.api.v1 import events_pb2, events_pb2_grpc
from shim.errors import InvalidArgument
from shim.services import ServiceContext

SUBSCRIBED_KEY = "berth-subscribed"
"""Initial metadata of Subscribe: the subscription is in place."""

_CLAUSE = re.compile(
    r"""^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(==|!=|~=)\s*"""
    r"""(?:"([^"]*)"|'([^']*)'|([^,]*?))\s*$"""
)


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str

    def holds(self, fields: Mapping[str, str]) -> bool:
        actual = fields.get(self.field)
        if self.op == "==":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        return actual is not None and actual.startswith(self.value)


Filter = list[Clause]


def parse_filters(filters: list[str]) -> list[Filter]:
    """Parse filter strings; InvalidArgument names the bad one."""
    parsed = []
    for text in filters:
        clauses = []
        for part in _split(text):
            m = _CLAUSE.match(part)
            if m is None:
                raise InvalidArgument(
                    f"filter {text!r}: cannot parse {part!r}; write field==value, "
                    "field!=value or field~=prefix, clauses joined by ','"
                )
            value = next(v for v in m.group(3, 4, 5) if v is not None)
            clauses.append(Clause(m.group(1), m.group(2), value))
        parsed.append(clauses)
    return parsed


def _split(text: str) -> list[str]:
    parts, cur, quote = [], "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == ",":
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def matches(filters: list[Filter], fields: Mapping[str, str]) -> bool:
    if not filters:
        return True
    return any(all(c.holds(fields) for c in f) for f in filters)


@dataclass
class _Subscriber:
    filters: list[Filter]
    queue: queue.Queue[events_pb2.Envelope | None]


BACKLOG = 1024


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[_Subscriber] = []
        self._backlog: collections.deque[tuple[events_pb2.Envelope, dict[str, str]]] = \
            collections.deque(maxlen=BACKLOG)
        self._sequence = 0
        self._closed = False

    def publish(self, namespace: str, topic: str, field: str, event: Message) -> None:
        """Publish `event` (a message of events.proto) under `topic`; `field` names it in
        Envelope's oneof."""
        container = str(getattr(event, "container_id", "") or getattr(event, "id", ""))
        fields = {"topic": topic, "namespace": namespace, "container": container}
        with self._lock:
            self._sequence += 1
            envelope = events_pb2.Envelope(namespace=namespace, topic=topic,
                                           sequence=self._sequence)
            envelope.timestamp.FromNanoseconds(time.time_ns())
            getattr(envelope, field).CopyFrom(event)
            self._backlog.append((envelope, fields))
            for sub in self._subscribers:
                if matches(sub.filters, fields):
                    sub.queue.put(envelope)

    def subscribe(self, filters: list[str], replay: bool = False) -> _Subscriber:
        """A subscription to the events published from now on, preceded by the matching
        ones of the backlog when `replay`."""
        sub = _Subscriber(parse_filters(filters), queue.Queue())
        with self._lock:
            if replay:
                for envelope, fields in self._backlog:
                    if matches(sub.filters, fields):
                        sub.queue.put(envelope)
            if self._closed:
                sub.queue.put(None)
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def close(self) -> None:
        """End every subscription (shimd is stopping)."""
        with self._lock:
            self._closed = True
            for sub in self._subscribers:
                sub.queue.put(None)

    def drain(self, sub: _Subscriber, active: Any = None) -> Iterator[events_pb2.Envelope]:
        """Events of subscription `sub` until close(), or until `active()` turns false."""
        while True:
            try:
                item = sub.queue.get(timeout=0.5)
            except queue.Empty:
                if active is not None and not active():
                    return
                continue
            if item is None:
                return
            yield item


class EventsServicer(events_pb2_grpc.EventsServicer):  # type: ignore[misc]
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    def Subscribe(
        self, request: events_pb2.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[events_pb2.Envelope]:
        # subscribed before the initial metadata goes out: a client that waited for it
        # sees every event published afterwards
        sub = self.bus.subscribe(list(request.filters), request.replay)
        try:
            context.send_initial_metadata(((SUBSCRIBED_KEY, "1"),))
            yield from self.bus.drain(sub, context.is_active)
        finally:
            self.bus.unsubscribe(sub)


def register(server: grpc.Server, ctx: ServiceContext) -> None:
    bus = EventBus()
    ctx.shared["events"] = bus
    events_pb2_grpc.add_EventsServicer_to_server(EventsServicer(bus), server)
