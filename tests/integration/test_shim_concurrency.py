# ruff: noqa: F811
# (pytest fixtures are imported by name and used as arguments)
"""50 containers started concurrently through one shimd: all run, all are reaped with
their own exit status, and nothing is left behind (the fixture checks processes,
mounts, runtime state and cgroups)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shim.client import Client, LogConfig
from shim.logs import read_entries
from tests.integration.shim_support import (  # noqa: F401 - fixtures
    Shimd,
    client,
    rootfs,
    run_container,
    shim_runtime,
    shimd,
)

pytestmark = pytest.mark.root

COUNT = 50


def test_fifty_concurrent_containers(
    shimd: Shimd, client: Client, rootfs: Path, tmp_path: Path
) -> None:
    ids = [shimd.container_name(f"n{i}") for i in range(COUNT)]
    events = client.subscribe("topic==/tasks/exit")

    def lifecycle(i: int) -> tuple[int, list[str]]:
        cid = ids[i]
        log = tmp_path / f"{cid}.log"
        run_container(client, cid, ["sh", "-c", f"echo n={i}; sleep 1; exit {i}"], rootfs,
                      log=LogConfig(str(log)))
        client.start(cid)
        status = client.wait(cid, timeout=120).exit_status
        client.delete_task(cid)
        client.delete_container(cid)
        return status, [e["log"] for e in read_entries(log)]

    with ThreadPoolExecutor(max_workers=COUNT) as pool:
        results = list(pool.map(lifecycle, range(COUNT)))
    assert results == [(i, [f"n={i}\n"]) for i in range(COUNT)]
    exits = {}
    for _ in range(COUNT):
        ev = events.next(30).task_exit
        exits[ev.container_id] = ev.exit_status
    events.cancel()
    assert exits == {cid: i for i, cid in enumerate(ids)}
    assert client.list_tasks() == [] and client.list_containers() == []
    assert not shimd.monitor_pids()
    assert os.listdir(shimd.state / "tasks" / "default") == []
