"""The OCI lifecycle end to end, with lowrun and with runc: create, start, state, kill, delete."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.support.runtime import Runtime


def wait_status(rt: Runtime, cid: str, status: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = rt.state(cid)
        if state["status"] == status or time.monotonic() > deadline:
            return state
        time.sleep(0.02)


def test_run_prints_and_returns_exit_code(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["sh", "-c", "echo hello from $$; exit 3"])
    result = runtime.run("run", "--bundle", str(bundle), container_id)
    assert result.stdout == "hello from 1\n"
    assert result.returncode == 3
    assert container_id not in runtime.ids()


def test_create_start_state_kill_delete(runtime: Runtime, bundle_factory, container_id, tmp_path):
    bundle = bundle_factory(["sleep", "60"])
    pid_file = tmp_path / "init.pid"
    created = runtime.run("create", "--bundle", str(bundle), "--pid-file", str(pid_file),
                          container_id)
    assert created.returncode == 0, created.stderr
    state = runtime.state(container_id)
    assert state["status"] == "created"
    assert state["id"] == container_id
    assert state["bundle"] == str(bundle)
    assert state["pid"] == int(pid_file.read_text())
    assert os.path.exists(f"/proc/{state['pid']}")

    assert runtime.run("start", container_id).returncode == 0
    assert runtime.state(container_id)["status"] == "running"
    with open(f"/proc/{state['pid']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"60"]

    assert runtime.run("kill", container_id, "KILL").returncode == 0
    assert wait_status(runtime, container_id, "stopped")["status"] == "stopped"
    assert runtime.run("delete", container_id).returncode == 0
    assert container_id not in runtime.ids()
    assert runtime.run("state", container_id).returncode != 0


def test_wrong_state_operations_are_refused(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["sleep", "60"])
    assert runtime.run("create", "--bundle", str(bundle), container_id).returncode == 0
    assert runtime.run("resume", container_id).returncode != 0
    assert runtime.run("start", container_id).returncode == 0
    again = runtime.run("start", container_id)
    assert again.returncode != 0
    assert again.stderr.strip()
    refused = runtime.run("delete", container_id)
    assert refused.returncode != 0
    assert "running" in refused.stderr
    assert runtime.state(container_id)["status"] == "running"
    assert runtime.run("delete", "--force", container_id).returncode == 0
    assert container_id not in runtime.ids()


def test_duplicate_id_is_refused(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["sleep", "60"])
    assert runtime.run("create", "--bundle", str(bundle), container_id).returncode == 0
    second = runtime.run("create", "--bundle", str(bundle), container_id)
    assert second.returncode != 0
    assert "exist" in second.stderr
    assert runtime.state(container_id)["status"] == "created"


def test_delete_created_container_kills_its_init(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["sleep", "60"])
    assert runtime.run("create", "--bundle", str(bundle), container_id).returncode == 0
    pid = runtime.state(container_id)["pid"]
    assert runtime.run("delete", container_id).returncode == 0
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    if os.path.exists(f"/proc/{pid}"):
        with open(f"/proc/{pid}/stat") as f:
            assert f.read().split()[2] == "Z"


@pytest.mark.parametrize("sig", ["TERM", "SIGUSR1", "9"])
def test_kill_accepts_names_and_numbers(runtime: Runtime, bundle_factory, container_id, sig):
    bundle = bundle_factory(["sleep", "60"])
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    assert runtime.run("kill", container_id, sig).returncode == 0
    # sleep as PID 1 ignores signals it has no handler for, except SIGKILL from outside
    expected = "stopped" if sig == "9" else "running"
    assert wait_status(runtime, container_id, expected, timeout=3)["status"] == expected


def test_list_shows_containers(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["sleep", "60"])
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    table = runtime.run("list").stdout
    assert table.splitlines()[0].split()[:3] == ["ID", "PID", "STATUS"]
    assert any(line.split()[0] == container_id and "running" in line
               for line in table.splitlines()[1:])
    assert runtime.ids() == [container_id]


def test_pause_freezes_and_resume_thaws(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["sh", "-c", "while true; do sleep 0.05; done"])
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    assert runtime.run("pause", container_id).returncode == 0
    assert runtime.state(container_id)["status"] == "paused"
    pid = runtime.state(container_id)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        freezer = next(line.split(":", 2)[2].strip() for line in f if ":freezer:" in line)
    with open(f"/sys/fs/cgroup/freezer{freezer}/freezer.state") as f:
        assert f.read().strip() == "FROZEN"
    assert runtime.run("resume", container_id).returncode == 0
    assert runtime.state(container_id)["status"] == "running"


def test_exec_joins_the_container(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["sleep", "60"])
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    result = runtime.run("exec", container_id, "sh", "-c",
                         "hostname; cat /proc/1/cmdline | tr '\\0' ' '; exit 7")
    assert result.returncode == 7, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "berth-test"
    assert lines[1].strip() == "sleep 60"
    init_pid = runtime.state(container_id)["pid"]
    for ns in ("pid", "net", "mnt", "uts", "ipc"):
        inode = os.stat(f"/proc/{init_pid}/ns/{ns}").st_ino
        assert inode != os.stat(f"/proc/self/ns/{ns}").st_ino


def test_exec_with_env_cwd_and_user(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["sleep", "60"])
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    result = runtime.run("exec", "--env", "GREETING=hi", "--cwd", "/tmp", "--user", "1000:1000",
                         container_id, "sh", "-c", "echo $GREETING; pwd; id -u; id -g")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["hi", "/tmp", "1000", "1000"]


def test_exec_in_stopped_container_is_refused(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["true"])
    assert runtime.run("run", "--keep", "--bundle", str(bundle), container_id).returncode == 0
    assert runtime.state(container_id)["status"] == "stopped"
    result = runtime.run("exec", container_id, "true")
    assert result.returncode != 0
    assert result.stderr.strip()
    assert runtime.run("delete", container_id).returncode == 0


def test_ps_lists_container_processes(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["sh", "-c", "sleep 60 & sleep 60 & wait"])
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    deadline = time.monotonic() + 5
    pids: list[int] = []
    while time.monotonic() < deadline:
        pids = json.loads(runtime.run("ps", "--format", "json", container_id).stdout)
        if len(pids) >= 3:
            break
        time.sleep(0.05)
    assert len(pids) == 3
    assert runtime.state(container_id)["pid"] in pids
