"""Event filters and the event bus: parsing, matching, order."""

from __future__ import annotations

import threading

import pytest

from shim.api.v1 import events_pb2
from shim.errors import InvalidArgument
from shim.services.events import EventBus, matches, parse_filters


def test_parse_and_match() -> None:
    f = parse_filters(['topic=="/tasks/exit",container==a1', "namespace~=team-"])
    assert matches(f, {"topic": "/tasks/exit", "container": "a1", "namespace": "x"})
    assert not matches(f, {"topic": "/tasks/exit", "container": "a2", "namespace": "x"})
    assert matches(f, {"topic": "/tasks/start", "container": "b", "namespace": "team-b"})
    neg = parse_filters(["topic!=/tasks/oom"])
    assert matches(neg, {"topic": "/tasks/exit"}) and not matches(neg, {"topic": "/tasks/oom"})
    assert matches([], {"topic": "anything"})


def test_quoted_values_may_hold_commas() -> None:
    f = parse_filters(["labels.x=='a,b'"])
    assert matches(f, {"labels.x": "a,b"})


@pytest.mark.parametrize("bad", ["topic", "==x", "topic=x", "topic==a,,=b"])
def test_bad_filters_name_the_problem(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="cannot parse"):
        parse_filters([bad])


def test_bus_delivers_in_order_to_matching_subscribers() -> None:
    bus = EventBus()
    everything = bus.subscribe([])
    exits = bus.subscribe(["topic==/tasks/exit"])

    def publish(start: int) -> None:
        for i in range(start, start + 100):
            bus.publish("ns", "/tasks/exit" if i % 2 else "/tasks/start", "task_exit",
                        events_pb2.TaskExit(container_id=f"c{i}", exit_status=i))

    threads = [threading.Thread(target=publish, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bus.close()
    seen = list(bus.drain(everything))
    assert [e.sequence for e in seen] == list(range(1, 401))
    odd = list(bus.drain(exits))
    assert len(odd) == 200 and all(e.topic == "/tasks/exit" for e in odd)
    assert [e.sequence for e in odd] == sorted(e.sequence for e in odd)
    assert seen[0].namespace == "ns" and seen[0].HasField("task_exit")


def test_replay_gives_the_backlog_first() -> None:
    bus = EventBus()
    for i in range(3):
        bus.publish("ns", "/tasks/exit", "task_exit", events_pb2.TaskExit(container_id=f"c{i}"))
    sub = bus.subscribe(["container==c1"], replay=True)
    fresh = bus.subscribe([])
    bus.publish("ns", "/tasks/exit", "task_exit", events_pb2.TaskExit(container_id="c1"))
    bus.close()
    assert [e.sequence for e in bus.drain(sub)] == [2, 4]
    assert [e.sequence for e in bus.drain(fresh)] == [4]
