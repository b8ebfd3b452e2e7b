# ruff: noqa: F811
# (pytest fixtures are imported by name and used as arguments)
"""Monitors: forked from the zygote (shared memory), or exec'd; and the zygote's
own failure does not stop containers from starting."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

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


def _private_kb(pid: int) -> int:
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Private_Clean", "Private_Dirty"):
            total += int(value.split()[0])
    return total


def _zygotes(shimd: Shimd) -> list[int]:
    """shimd's children that run `shim-monitor --zygote` (not the intermediates and
    monitors it forks, which share its command line)."""
    assert shimd.proc is not None
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if b"--zygote\x00" in cmd and ppid == shimd.proc.pid:
                out.append(int(entry))
    return out


def _running_monitor(shimd: Shimd, client: Client, rootfs: Path) -> tuple[str, int]:
    cid = shimd.container_name()
    run_container(client, cid, ["sleep", "1000"], rootfs)
    client.start(cid)
    [monitor] = shimd.monitor_pids()
    return cid, monitor


def test_forked_monitors_keep_little_memory_private(
    shimd: Shimd, client: Client, rootfs: Path
) -> None:
    assert len(_zygotes(shimd)) == 1
    cid, monitor = _running_monitor(shimd, client, rootfs)
    assert Path(f"/proc/{monitor}/cmdline").read_bytes().count(b"--zygote") == 1
    assert os.readlink(f"/proc/{monitor}/cwd") == str(shimd.state / "tasks" / "default" / cid)
    assert _private_kb(monitor) < 4096  # an exec'd monitor keeps about 5 MB private
    remove(client, cid)


def test_exec_monitors_without_zygote(shimd: Shimd, rootfs: Path) -> None:
    client = shimd.start("--no-zygote")
    try:
        assert _zygotes(shimd) == []
        cid, monitor = _running_monitor(shimd, client, rootfs)
        assert b"monitor.json" in Path(f"/proc/{monitor}/cmdline").read_bytes()
        client.kill(cid, signal.SIGKILL)
        assert client.wait(cid, timeout=30).exit_status == 137
        remove(client, cid)
    finally:
        client.close()


def test_a_dead_zygote_is_replaced(shimd: Shimd, client: Client, rootfs: Path) -> None:
    [zygote] = _zygotes(shimd)
    os.kill(zygote, signal.SIGKILL)
    cid, _ = _running_monitor(shimd, client, rootfs)
    assert client.get_task(cid).pid > 0
    assert len(_zygotes(shimd)) == 1 and _zygotes(shimd) != [zygote]
    remove(client, cid)


def test_the_zygote_ends_with_shimd(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid, monitor = _running_monitor(shimd, client, rootfs)
    [zygote] = _zygotes(shimd)
    shimd.kill9()
    pidfd = os.pidfd_open(zygote)
    try:
        import select

        assert select.select([pidfd], [], [], 10)[0], "the zygote outlived shimd"
    finally:
        os.close(pidfd)
    assert os.path.exists(f"/proc/{monitor}")  # the monitor stays
    again = shimd.start()
    try:
        remove(again, cid)
    finally:
        again.close()
