"""The monitor process driven through its socket, with a fake runtime (no root):
create, start, output to the log, exits and waits, kill, exec, events, delete."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shim.logs import read_entries
from shim.monitor import client as monitor
from shim.monitor.protocol import EXIT_NAME, MonitorError

FAKE = Path(__file__).with_name("shim_fake_runtime.py")


@pytest.fixture
def work() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mon-", dir="/tmp") as d:
        runtime = Path(d) / "fake-runtime"
        runtime.write_text(f"#!{sys.executable} -S\n" + FAKE.read_text())
        runtime.chmod(runtime.stat().st_mode | stat.S_IXUSR)
        try:
            yield Path(d)
        finally:
            left = _kill_leftovers(Path(d))
        assert not left, f"the test left processes: {left}"


def _kill_leftovers(work: Path) -> list[int]:
    """Monitors of this test (cwd or command line in `work`) and their fake containers."""
    victims = [int(p.read_text()) for p in (work / "rt").glob("*.pid")] \
        if (work / "rt").exists() else []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if str(work).encode() in cmdline or cwd.startswith(str(work)):
            victims.append(int(entry))
    left = []
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
            left.append(pid)
        except ProcessLookupError:
            pass
    return left


@pytest.fixture(params=[True, False], ids=["zygote", "exec"])
def launcher(request: pytest.FixtureRequest, work: Path) -> Iterator[monitor.MonitorLauncher]:
    launcher = monitor.MonitorLauncher(str(work), use_zygote=request.param)
    try:
        yield launcher
    finally:
        launcher.close()


def _task(work: Path, launcher: monitor.MonitorLauncher, args: list[str],
          name: str = "t1", log: str = "", **stdio: str) -> tuple[str, dict[str, int]]:
    task_dir = work / name
    task_dir.mkdir()
    (task_dir / "config.json").write_text(json.dumps(
        {"process": {"args": args, "env": ["PATH=/usr/bin:/bin"]}}))
    sock = str(work / f"{name}.sock")
    started = launcher.start(str(task_dir), {
        "id": name, "namespace": "default", "bundle": str(task_dir),
        "runtime": str(work / "fake-runtime"), "runtime_root": str(work / "rt"),
        "socket": sock, "task_dir": str(task_dir), "stdio": stdio,
        "log": {"path": log or str(work / f"{name}.log")},
    })
    return sock, started


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_lifecycle_log_and_events(work: Path, launcher: monitor.MonitorLauncher) -> None:
    sock, started = _task(work, launcher, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert monitor.call(sock, "state")["init"]["status"] == "created"
    with monitor.MonitorConnection(sock, timeout=10) as events_conn:
        events = events_conn.events()
        assert monitor.call(sock, "start")["pid"] == started["pid"]
        waited = monitor.call(sock, "wait", timeout=10)
        assert waited["exit_status"] == 3 and waited["exited_at"] > 0
        event = next(events)
        assert event["type"] == "exit" and event["exit_status"] == 3
    assert json.loads((work / "t1" / EXIT_NAME).read_text())["exit_status"] == 3
    entries = sorted((e["stream"], e["log"]) for e in read_entries(work / "t1.log"))
    assert entries == [("stderr", "err\n"), ("stdout", "out\n")]
    with pytest.raises(MonitorError, match="not created"):
        monitor.call(sock, "start")
    monitor.call(sock, "delete")
    assert _gone(started["monitor_pid"])
    assert not os.path.exists(sock)


def test_kill_exec_and_delete_rules(work: Path, launcher: monitor.MonitorLauncher) -> None:
    sock, started = _task(work, launcher, ["sleep", "100"])
    monitor.call(sock, "start")
    with pytest.raises(MonitorError, match="running: kill it first") as exc:
        monitor.call(sock, "delete")
    assert exc.value.kind == "failed_precondition"
    out = work / "exec.out"
    monitor.call(sock, "exec", exec_id="e1", process={"args": ["sh", "-c", "echo x; exit 4"]},
                 stdio={"stdout": str(out)})
    with pytest.raises(MonitorError, match="in use") as dup:
        monitor.call(sock, "exec", exec_id="e1", process={"args": ["true"]}, stdio={})
    assert dup.value.kind == "already_exists"
    assert monitor.call(sock, "start", exec_id="e1")["pid"] > 0
    assert monitor.call(sock, "wait", exec_id="e1", timeout=10)["exit_status"] == 4
    assert out.read_text() == "x\n"
    monitor.call(sock, "delete", exec_id="e1")
    with pytest.raises(MonitorError, match="not found") as missing:
        monitor.call(sock, "wait", exec_id="e1")
    assert missing.value.kind == "not_found"
    monitor.call(sock, "kill", signal=signal.SIGKILL)
    assert monitor.call(sock, "wait", timeout=10)["exit_status"] == 137
    with pytest.raises(MonitorError, match="already exited"):
        monitor.call(sock, "kill", signal=signal.SIGKILL)
    monitor.call(sock, "delete")
    assert _gone(started["monitor_pid"])


def test_create_failure_reports_the_runtime_message(
    work: Path, launcher: monitor.MonitorLauncher
) -> None:
    with pytest.raises(MonitorError, match="no-such-binary: executable file not found"):
        _task(work, launcher, ["no-such-binary"])
    assert not (work / "t1.sock").exists()


def test_stdin_fifo_and_close_io(work: Path, launcher: monitor.MonitorLauncher) -> None:
    stdin, stdout = work / "in", work / "out"
    os.mkfifo(stdin)
    os.mkfifo(stdout)
    sock, started = _task(work, launcher, ["tr", "a-z", "A-Z"], stdin=str(stdin),
                          stdout=str(stdout))
    reader = os.open(stdout, os.O_RDONLY)  # the monitor holds the other end already
    monitor.call(sock, "start")
    with open(stdin, "wb") as fh:
        fh.write(b"quiet\n")
    time.sleep(0.2)
    assert monitor.call(sock, "state")["init"]["status"] == "running"  # no EOF yet
    monitor.call(sock, "close_io")
    assert monitor.call(sock, "wait", timeout=10)["exit_status"] == 0
    data = b""
    while chunk := os.read(reader, 100):
        data += chunk
    os.close(reader)
    assert data == b"QUIET\n"
    monitor.call(sock, "delete")
    assert _gone(started["monitor_pid"])


def test_a_failing_log_does_not_lose_the_exit(
    work: Path, launcher: monitor.MonitorLauncher
) -> None:
    sock, started = _task(work, launcher, ["sh", "-c", "echo lost; exit 6"], log="/dev/full")
    monitor.call(sock, "start")
    assert monitor.call(sock, "wait", timeout=10)["exit_status"] == 6
    assert "logging stopped" in (work / "t1" / "monitor.log").read_text()
    monitor.call(sock, "delete")
    assert _gone(started["monitor_pid"])
