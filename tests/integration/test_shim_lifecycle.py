# ruff: noqa: F811
# (pytest fixtures are imported by name and used as arguments)
"""The lifecycle of a task through shimd's client, with runc and with lowrun."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from shim.api.v1 import tasks_pb2
from shim.client import Client, LogConfig, Stdio
from shim.logs import read_entries
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


def _read_fifo(path: Path, out: list[bytes]) -> threading.Thread:
    def read() -> None:
        with open(path, "rb") as fh:
            out.append(fh.read())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def test_create_start_wait_delete_with_log_and_events(
    shimd: Shimd, client: Client, rootfs: Path, tmp_path: Path
) -> None:
    cid = shimd.container_name()
    events = client.subscribe(f"container=={cid}")
    log = tmp_path / f"{cid}-json.log"
    pid = run_container(client, cid, ["sh", "-c", "echo out; echo err >&2; exit 7"], rootfs,
                        log=LogConfig(str(log)))
    assert pid > 0
    task = client.get_task(cid)
    assert task.status == tasks_pb2.CREATED and task.pid == pid
    assert client.start(cid) == pid
    status = client.wait(cid, timeout=30)
    assert status.exit_status == 7 and not status.oom_killed and status.exited_at_ns > 0
    task = client.get_task(cid)
    assert task.status == tasks_pb2.STOPPED and task.exit_status == 7
    deleted = client.delete_task(cid)
    assert deleted.exit_status == 7 and deleted.pid == pid
    client.delete_container(cid)
    entries = list(read_entries(log))
    assert [(e["stream"], e["log"]) for e in sorted(entries, key=lambda e: e["stream"])] == [
        ("stderr", "err\n"), ("stdout", "out\n")]
    assert all(e["time"].endswith("Z") for e in entries)
    topics = [events.next(10).topic for _ in range(6)]
    events.cancel()
    assert topics == ["/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit",
                      "/tasks/delete", "/containers/delete"]


def test_exit_event_carries_status(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    events = client.subscribe('topic=="/tasks/exit"')
    run_container(client, cid, ["sh", "-c", "exit 3"], rootfs)
    client.start(cid)
    ev = events.next(30)
    events.cancel()
    assert ev.task_exit.container_id == cid and ev.task_exit.exit_status == 3
    assert ev.namespace == "default"
    remove(client, cid)


def test_kill_reports_the_signal(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    run_container(client, cid, ["sleep", "1000"], rootfs)
    client.start(cid)
    assert client.get_task(cid).status == tasks_pb2.RUNNING
    client.kill(cid, signal.SIGKILL)
    assert client.wait(cid, timeout=30).exit_status == 128 + signal.SIGKILL
    remove(client, cid)


def test_stdio_through_fifos(shimd: Shimd, client: Client, rootfs: Path, tmp_path: Path) -> None:
    cid = shimd.container_name()
    stdin, stdout = tmp_path / "in", tmp_path / "out"
    os.mkfifo(stdin)
    os.mkfifo(stdout)
    run_container(client, cid, ["tr", "a-z", "A-Z"], rootfs,
                  stdio=Stdio(stdin=str(stdin), stdout=str(stdout)))
    out: list[bytes] = []
    reader = _read_fifo(stdout, out)
    client.start(cid)
    with open(stdin, "wb") as fh:
        fh.write(b"hello shim\n")
    client.close_io(cid)
    assert client.wait(cid, timeout=30).exit_status == 0
    reader.join(10)
    assert out == [b"HELLO SHIM\n"]
    remove(client, cid)


def test_exec_without_tty(shimd: Shimd, client: Client, rootfs: Path, tmp_path: Path) -> None:
    cid = shimd.container_name()
    run_container(client, cid, ["sleep", "1000"], rootfs)
    client.start(cid)
    out = tmp_path / "exec.out"
    client.exec(cid, "e1", {"args": ["sh", "-c", "echo in-$HOSTNAME; exit 4"],
                            "env": ["HOSTNAME=box"]}, Stdio(stdout=str(out)))
    exec_pid = client.start(cid, "e1")
    assert exec_pid > 0
    assert client.wait(cid, "e1", timeout=30).exit_status == 4
    assert out.read_text() == "in-box\n"
    assert client.get_task(cid, "e1").status == tasks_pb2.STOPPED
    client.delete_task(cid, "e1")
    assert client.get_task(cid).status == tasks_pb2.RUNNING
    remove(client, cid)


def test_exec_with_tty_and_resize(
    shimd: Shimd, client: Client, rootfs: Path, tmp_path: Path
) -> None:
    cid = shimd.container_name()
    run_container(client, cid, ["sleep", "1000"], rootfs)
    client.start(cid)
    stdin, stdout = tmp_path / "in", tmp_path / "out"
    os.mkfifo(stdin)
    os.mkfifo(stdout)
    client.exec(cid, "tty1", {"args": ["sh", "-c", "read line; tty; stty size; exit 2"]},
                Stdio(stdin=str(stdin), stdout=str(stdout), terminal=True))
    out: list[bytes] = []
    reader = _read_fifo(stdout, out)
    client.start(cid, "tty1")
    client.resize_pty(cid, 101, 33, exec_id="tty1")
    with open(stdin, "wb") as fh:
        fh.write(b"go\n")
    assert client.wait(cid, "tty1", timeout=30).exit_status == 2
    client.delete_task(cid, "tty1")
    remove(client, cid)
    reader.join(10)
    text = out[0].decode().replace("\r", "")
    assert "/dev/pts/" in text and "33 101" in text


def test_task_with_tty(shimd: Shimd, client: Client, rootfs: Path, tmp_path: Path) -> None:
    cid = shimd.container_name()
    log = tmp_path / "tty-json.log"
    run_container(client, cid, ["sh", "-c", "[ -t 1 ] && echo is-a-tty"], rootfs,
                  stdio=Stdio(terminal=True), log=LogConfig(str(log)))
    client.start(cid)
    assert client.wait(cid, timeout=30).exit_status == 0
    remove(client, cid)
    assert [e["log"] for e in read_entries(log)] == ["is-a-tty\r\n"]


def test_pause_resume(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    events = client.subscribe("topic~=/tasks/p,container==" + cid,
                              "topic~=/tasks/r,container==" + cid)
    run_container(client, cid, ["sleep", "1000"], rootfs)
    client.start(cid)
    client.pause(cid)
    assert client.get_task(cid).status == tasks_pb2.PAUSED
    freezer = Path(client.stats(cid).cgroup.replace("/memory/", "/freezer/"))
    if (freezer / "freezer.state").exists():
        assert (freezer / "freezer.state").read_text().strip() == "FROZEN"
    client.resume(cid)
    assert client.get_task(cid).status == tasks_pb2.RUNNING
    assert [events.next(10).topic for _ in range(2)] == ["/tasks/paused", "/tasks/resumed"]
    events.cancel()
    remove(client, cid)


def test_pids_stats_and_update(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    pid = run_container(client, cid, ["sleep", "1000"], rootfs)
    client.start(cid)
    client.exec(cid, "sleeper", {"args": ["sleep", "500"]})
    exec_pid = client.start(cid, "sleeper")
    pids = {p.pid: p.exec_id for p in client.pids(cid)}
    assert pids == {pid: "", exec_pid: "sleeper"}
    stats = client.stats(cid)
    assert stats.memory_usage > 0 and stats.pids_current == 2 and stats.cpu_usage_ns > 0
    client.update_task(cid, {"memory": {"limit": 64 << 20}})
    assert client.stats(cid).memory_limit == 64 << 20
    client.kill(cid, signal.SIGKILL, exec_id="sleeper")
    assert client.wait(cid, "sleeper", timeout=30).exit_status == 137
    remove(client, cid)


def test_oom_kill_is_reported(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    events = client.subscribe(f"topic==/tasks/oom,container=={cid}")
    limit = 16 << 20
    spec = {"linux": {"resources": {"memory": {"limit": limit, "swap": limit}}}}
    run_container(client, cid, ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a)"],
                  rootfs, spec=spec)
    client.start(cid)
    status = client.wait(cid, timeout=60)
    assert status.oom_killed
    assert status.exit_status in (137, 1, 2)  # the shell may see its child killed
    assert events.next(10).task_oom.container_id == cid
    events.cancel()
    remove(client, cid)
