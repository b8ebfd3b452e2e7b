# ruff: noqa: F811
# (pytest fixtures are imported by name and used as arguments)
"""shimctl over a real shimd, lightly: the client underneath is tested in depth."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shim.client import Client
from tests.integration.shim_support import (  # noqa: F401 - fixtures
    Shimd,
    client,
    rootfs,
    shim_runtime,
    shimd,
)

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]


def ctl(shimd: Shimd, *args: str, input: str | None = None,
        namespace: str = "default") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shim.ctl.main", "--address", str(shimd.address),
         "--namespace", namespace, *args],
        cwd=ROOT, input=input, capture_output=True, text=True, timeout=60,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def test_run_rm_returns_the_exit_code(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    r = ctl(shimd, "run", "--rm", "--rootfs", str(rootfs), cid,
            "sh", "-c", "echo out; echo err >&2; exit 42")
    assert (r.returncode, r.stdout, r.stderr) == (42, "out\n", "err\n")
    assert client.list_containers() == [] and client.list_tasks() == []


def test_run_interactive_reads_stdin(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    r = ctl(shimd, "run", "--rm", "-i", "--rootfs", str(rootfs), cid, "tr", "a-z", "A-Z",
            input="shout\n")
    assert (r.returncode, r.stdout) == (0, "SHOUT\n")


def test_detached_lifecycle(shimd: Shimd, client: Client, rootfs: Path, tmp_path: Path) -> None:
    cid = shimd.container_name()
    log = tmp_path / "d.log"
    assert ctl(shimd, "run", "-d", "--log", str(log), "--rootfs", str(rootfs), cid,
               "sh", "-c", "echo started; exec sleep 1000").returncode == 0
    ls = ctl(shimd, "tasks", "ls").stdout.splitlines()
    assert ls[0].split() == ["TASK", "PID", "STATUS", "EXIT"]
    assert ls[1].split()[0] == cid and ls[1].split()[2:] == ["RUNNING", "-"]
    assert ctl(shimd, "containers", "ls", "-q").stdout.split() == [cid]
    ex = ctl(shimd, "tasks", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo hi; exit 6")
    assert (ex.returncode, ex.stdout) == (6, "hi\n")
    assert ctl(shimd, "tasks", "pause", cid).returncode == 0
    assert "PAUSED" in ctl(shimd, "tasks", "ls").stdout
    assert ctl(shimd, "tasks", "resume", cid).returncode == 0
    assert '"pids_current": "1"' in ctl(shimd, "tasks", "stats", cid).stdout
    assert len(ctl(shimd, "tasks", "ps", cid).stdout.splitlines()) == 2
    assert ctl(shimd, "tasks", "kill", "-s", "KILL", cid).returncode == 0
    deadline = time.monotonic() + 20
    while "STOPPED" not in (out := ctl(shimd, "tasks", "ls").stdout):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert out.splitlines()[1].split()[2:] == ["STOPPED", "137"]
    busy = ctl(shimd, "containers", "rm", cid)
    assert busy.returncode == 1 and "delete the task first" in busy.stderr
    assert ctl(shimd, "tasks", "rm", cid).returncode == 0
    assert ctl(shimd, "containers", "rm", cid).returncode == 0
    assert "started" in log.read_text()


def test_errors_are_messages(shimd: Shimd, client: Client, rootfs: Path) -> None:
    r = ctl(shimd, "tasks", "kill", "nothing-here")
    assert r.returncode == 1 and "task 'nothing-here' not found" in r.stderr
    cid = shimd.container_name()
    r = ctl(shimd, "run", "--rootfs", str(rootfs), cid, "/no/such/binary")
    assert r.returncode != 0 and "/no/such/binary" in r.stderr
    assert client.list_containers() == []


def test_events_are_printed(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shim.ctl.main", "--address", str(shimd.address), "events",
         f"container=={cid}"], cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.5)  # the subscription is in place before anything happens
        assert ctl(shimd, "run", "--rm", "--rootfs", str(rootfs), cid, "true").returncode == 0
        topics = [proc.stdout.readline().split()[2] for _ in range(6)]  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(10)
    assert topics == ["/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit",
                      "/tasks/delete", "/containers/delete"]


def test_run_with_a_tty(shimd: Shimd, client: Client, rootfs: Path) -> None:
    cid = shimd.container_name()
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "shim.ctl.main", "--address",
                                  str(shimd.address), "run", "--rm", "-t", "--rootfs",
                                  str(rootfs), cid, "sh", "-c", "tty; stty size; exit 9"])
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 9
    assert b"/dev/pts/0" in out
