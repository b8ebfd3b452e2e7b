# ruff: noqa: F811
# (pytest fixtures are imported by name and used as arguments)
"""kill -9 of shimd: containers and monitors live on, a new shimd re-attaches to them
and reports the exits that happened while it was down."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from shim.api.v1 import tasks_pb2
from shim.client import Client
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kill9_shimd_then_reattach(shimd: Shimd, client: Client, rootfs: Path) -> None:
    long, short = shimd.container_name("long"), shimd.container_name("short")
    run_container(client, long, ["sleep", "1000"], rootfs)
    long_pid = client.get_task(long).pid
    client.start(long)
    run_container(client, short, ["sh", "-c", "sleep 1; exit 5"], rootfs)
    client.start(short)
    monitors = shimd.monitor_pids()
    assert len(monitors) == 2

    shimd.kill9()
    assert _alive(long_pid) and all(_alive(p) for p in monitors)
    exit_file = shimd.state / "tasks" / "default" / short / "exit.json"
    deadline = time.monotonic() + 20
    while not exit_file.exists():  # the short container ends while no shimd runs
        assert time.monotonic() < deadline, "the short container did not exit"
        time.sleep(0.1)

    again = shimd.start()
    try:
        # the exit the new shimd found is delivered to who asks for the backlog
        missed = again.subscribe("topic==/tasks/exit", replay=True)
        ev = missed.next(10)
        missed.cancel()
        assert ev.task_exit.container_id == short and ev.task_exit.exit_status == 5
        events = again.subscribe("topic==/tasks/exit")
        stopped = again.get_task(short)
        assert stopped.status == tasks_pb2.STOPPED and stopped.exit_status == 5
        assert again.wait(short, timeout=30).exit_status == 5
        running = again.get_task(long)
        assert running.status == tasks_pb2.RUNNING and running.pid == long_pid
        assert {t.container_id: t.status for t in again.list_tasks()} == {
            long: tasks_pb2.RUNNING, short: tasks_pb2.STOPPED}
        # the re-attached monitor still serves kill, and its exit reaches the new shimd
        again.kill(long, signal.SIGKILL)
        ev = events.next(30)
        events.cancel()
        assert ev.task_exit.container_id == long and ev.task_exit.exit_status == 137
        remove(again, short)
        remove(again, long)
        assert not shimd.monitor_pids()
    finally:
        again.close()


def test_restart_with_sigterm_keeps_tasks(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    run_container(client, cid, ["sleep", "1000"], rootfs)
    client.start(cid)
    shimd.stop()
    again = shimd.start()
    try:
        assert again.get_task(cid).status == tasks_pb2.RUNNING
        assert [c.id for c in again.list_containers()] == [cid]
        remove(again, cid)
    finally:
        again.close()
