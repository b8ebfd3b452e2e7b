"""shimd in-process, without root: containers, namespaces, errors, events, health."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shim import errors
from shim.client import Client
from shim.server import ShimServer
from shim.services import ServiceContext


@pytest.fixture
def client() -> Iterator[Client]:
    with tempfile.TemporaryDirectory(prefix="shimu-", dir="/tmp") as d:
        ctx = ServiceContext(root=Path(d) / "root", state=Path(d) / "state", runtime="true")
        server = ShimServer(ctx, Path(d) / "s.sock").start()
        c = Client(str(Path(d) / "s.sock"), timeout=10)
        try:
            yield c
        finally:
            c.close()
            server.stop(0)


def test_containers_crud_and_events(client: Client) -> None:
    events = client.subscribe()
    created = client.create_container("web", {"process": {"args": ["nginx"]}},
                                      image="nginx:1", labels={"tier": "front"})
    assert created.id == "web" and created.created_at.seconds > 0
    got = client.get_container("web")
    import json

    spec = json.loads(got.spec)
    assert spec["process"]["args"] == ["nginx"]
    assert "CAP_CHOWN" in spec["process"]["capabilities"]["bounding"]  # the default spec
    client.create_container("db", {"process": {"args": ["pg"]}}, labels={"tier": "back"})
    assert [c.id for c in client.list_containers("labels.tier==front")] == ["web"]
    assert client.update_container("web", labels={"tier": "edge"}).labels == {"tier": "edge"}
    client.delete_container("web")
    client.delete_container("db")
    topics = [events.next(5).topic for _ in range(5)]
    events.cancel()
    assert topics == ["/containers/create", "/containers/create", "/containers/update",
                      "/containers/delete", "/containers/delete"]


def test_status_codes(client: Client) -> None:
    with pytest.raises(errors.NotFound):
        client.get_container("nope")
    client.create_container("x", {"process": {"args": ["true"]}})
    with pytest.raises(errors.AlreadyExists):
        client.create_container("x", {"process": {"args": ["true"]}})
    with pytest.raises(errors.InvalidArgument, match=r"not valid JSON|args"):
        client.create_container("y", {"process": {"args": "not a list"}})
    with pytest.raises(errors.InvalidArgument, match="cannot parse"):
        client.list_containers("bad filter")
    with pytest.raises(errors.InvalidArgument, match="cannot parse"):
        client.subscribe("bad filter")
    with pytest.raises(errors.NotFound, match="task 'x' not found"):
        client.get_task("x")
    client.delete_container("x")


def test_namespaces_do_not_see_each_other(client: Client) -> None:
    client.with_namespace("a").create_container("same", {"process": {"args": ["a"]}})
    client.with_namespace("b").create_container("same", {"process": {"args": ["b"]}})
    assert client.list_containers() == []
    import json

    assert json.loads(client.with_namespace("b").get_container("same").spec)[
        "process"]["args"] == ["b"]
    client.with_namespace("a").delete_container("same")
    assert [c.id for c in client.with_namespace("b").list_containers()] == ["same"]
    client.with_namespace("b").delete_container("same")


def test_health_and_version(client: Client) -> None:
    assert client.health() == "SERVING"
    assert client.version().api == "berth.shim.v1"


def test_second_server_on_the_same_socket_is_refused(client: Client) -> None:
    ctx = ServiceContext(root=Path(client.address).parent / "r2",
                         state=Path(client.address).parent / "s2")
    with pytest.raises(errors.Unavailable, match="another shimd"):
        ShimServer(ctx, Path(client.address)).start()


def test_socket_group_mode(tmp_path: Path) -> None:
    import grp
    import os

    group = grp.getgrgid(os.getgid()).gr_name
    with tempfile.TemporaryDirectory(prefix="shimg-", dir="/tmp") as d:
        ctx = ServiceContext(root=Path(d) / "root", state=Path(d) / "state", runtime="true")
        server = ShimServer(ctx, Path(d) / "s.sock", group=group).start()
        try:
            st = os.stat(Path(d) / "s.sock")
            assert st.st_mode & 0o777 == 0o660 and st.st_gid == os.getgid()
        finally:
            server.stop(0)
        assert not (Path(d) / "s.sock").exists()
