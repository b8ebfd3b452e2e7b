# ruff: noqa: F811
# (pytest fixtures are imported by name and used as arguments)
"""Bad requests get the right status, an actionable message, and leave no trace;
namespaces keep containers apart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shim import errors
from shim.api.v1 import tasks_pb2
from shim.client import Client, Mount
from tests.integration.shim_support import (  # noqa: F401 - fixtures
    Shimd,
    client,
    remove,
    rootfs,
    run_container,
    shim_runtime,
    shimd,
)

pytestmark = pytest.mark.root


def _no_task_left(shimd: Shimd, cid: str, namespace: str = "default") -> None:
    assert not (shimd.state / "tasks" / namespace / cid).exists()
    assert not list((shimd.state / "runtime").glob(f"*/*/{cid}"))
    left = shimd.monitor_pids()
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes() for p in left]


def test_unknown_ids_are_not_found(shimd: Shimd, client: Client) -> None:
    with pytest.raises(errors.NotFound, match="container 'ghost' not found"):
        client.get_container("ghost")
    with pytest.raises(errors.NotFound, match=r"task .ghost. not found.*Tasks.Create"):
        client.start("ghost")
    with pytest.raises(errors.NotFound):
        client.kill("ghost", 9)
    with pytest.raises(errors.NotFound):
        client.wait("ghost", timeout=10)
    with pytest.raises(errors.NotFound):
        client.delete_task("ghost")
    with pytest.raises(errors.NotFound, match=r"create it first|not found"):
        client.create_task("ghost")


def test_duplicate_ids_already_exist(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    run_container(client, cid, ["sleep", "100"], rootfs)
    with pytest.raises(errors.AlreadyExists, match=f"container '{cid}' already exists"):
        client.create_container(cid, {"process": {"args": ["true"]}})
    with pytest.raises(errors.AlreadyExists, match="already has a task"):
        client.create_task(cid, rootfs=[Mount("bind", str(rootfs))])
    remove(client, cid)


def test_wrong_order_is_a_failed_precondition(
    shimd: Shimd, client: Client, rootfs: Path
) -> None:
    cid = shimd.container_name()
    run_container(client, cid, ["sleep", "100"], rootfs)
    with pytest.raises(errors.FailedPrecondition, match="has a task"):
        client.delete_container(cid)
    client.start(cid)
    with pytest.raises(errors.FailedPrecondition, match="not created"):
        client.start(cid)
    with pytest.raises(errors.FailedPrecondition, match="running: kill it first"):
        client.delete_task(cid)
    with pytest.raises(errors.FailedPrecondition, match="not paused"):
        client.resume(cid)
    client.kill(cid, 9)
    client.wait(cid, timeout=30)
    with pytest.raises(errors.NotFound, match="already exited"):
        client.kill(cid, 9)
    with pytest.raises(errors.FailedPrecondition):
        client.stats(cid)
    remove(client, cid)
    _no_task_left(shimd, cid)


def test_invalid_specs_are_rejected_without_trace(
    shimd: Shimd, client: Client, rootfs: Path
) -> None:
    cid = shimd.container_name()
    with pytest.raises(errors.InvalidArgument, match=r"\$.process.args"):
        client.create_container(cid, {"process": {"args": []}})
    with pytest.raises(errors.InvalidArgument, match="container id"):
        client.create_container("bad/id", {"process": {"args": ["true"]}})
    with pytest.raises(errors.InvalidArgument, match=r"\$.process.cwd"):
        client.create_container(cid, {"process": {"args": ["true"], "cwd": "relative"}})
    assert client.list_containers() == []
    client.create_container(cid, {"process": {"args": ["true"]}})
    with pytest.raises(errors.InvalidArgument, match="no root filesystem"):
        client.create_task(cid)
    with pytest.raises(errors.InvalidArgument, match="existing absolute directory"):
        client.create_task(cid, rootfs=[Mount("bind", "/nonexistent/rootfs")])
    with pytest.raises(errors.InvalidArgument, match="not supported"):
        client.create_task(cid, rootfs=[Mount("nfs", "server:/x", ["ro"])])
    with pytest.raises(errors.InvalidArgument, match="must be a fifo"):
        from shim.client import Stdio

        client.create_task(cid, rootfs=[Mount("bind", str(rootfs))],
                           stdio=Stdio(stdin=str(rootfs / "etc" / "passwd")))
    _no_task_left(shimd, cid)
    client.delete_container(cid)


def test_runtime_failure_leaves_no_trace(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    client.create_container(cid, {"process": {"args": ["/no/such/binary"]}})
    with pytest.raises(errors.FailedPrecondition, match=f"cannot create task '{cid}'"):
        client.create_task(cid, rootfs=[Mount("bind", str(rootfs))])
        client.start(cid)  # runtimes that check the binary only at start
    if client.list_tasks():
        remove(client, cid)
    else:
        client.delete_container(cid)
    _no_task_left(shimd, cid)


def test_unknown_runtime_is_invalid(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    client.create_container(cid, {"process": {"args": ["true"]}}, runtime="no-such-runtime")
    with pytest.raises(errors.InvalidArgument, match="'no-such-runtime' is not on PATH"):
        client.create_task(cid, rootfs=[Mount("bind", str(rootfs))])
    client.delete_container(cid)
    _no_task_left(shimd, cid)


def test_namespaces_are_isolated(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    a, b = client.with_namespace("team-a"), client.with_namespace("team-b")
    run_container(a, cid, ["sleep", "100"], rootfs)
    a.start(cid)
    assert [c.id for c in a.list_containers()] == [cid]
    assert b.list_containers() == [] and b.list_tasks() == [] and client.list_tasks() == []
    with pytest.raises(errors.NotFound, match="namespace 'team-b'"):
        b.get_container(cid)
    with pytest.raises(errors.NotFound):
        b.kill(cid, 9)
    # the same id in another namespace is another container
    run_container(b, cid, ["sh", "-c", "exit 5"], rootfs)
    b.start(cid)
    assert b.wait(cid, timeout=30).exit_status == 5
    assert a.get_task(cid).status == tasks_pb2.RUNNING
    remove(b, cid)
    remove(a, cid)
    with pytest.raises(errors.InvalidArgument, match="namespace"):
        client.with_namespace("bad namespace!")


def test_socket_is_private(shimd: Shimd, client: Client) -> None:
    assert os.stat(shimd.address).st_mode & 0o777 == 0o600
    assert client.health() == "SERVING"
    assert client.version().api == "berth.shim.v1"
