"""The rest of runc's command line through the real binaries: spec, features, events,
update from JSON, --no-pivot, exec with a terminal, --log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from lowrun.console import recv_fd
from tests.support.bundle import base_config
from tests.support.runtime import Runtime


def test_spec_writes_a_config_that_runs(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["true"])
    (bundle / "config.json").unlink()
    result = subprocess.run([runtime.binary, "spec"], cwd=bundle, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["sh"]
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "echo ok"]
    (bundle / "config.json").write_text(json.dumps(config))
    assert runtime.run("run", "--bundle", str(bundle), container_id).stdout == "ok\n"
    again = subprocess.run([runtime.binary, "spec"], cwd=bundle, capture_output=True, text=True)
    assert again.returncode != 0  # never overwrites


def test_features_is_json(runtime: Runtime):
    result = runtime.run("features")
    assert result.returncode == 0, result.stderr
    features = json.loads(result.stdout)
    assert "pid" in features["linux"]["namespaces"]
    assert "CAP_SYS_ADMIN" in features["linux"]["capabilities"]
    assert "createRuntime" in features["hooks"]


def test_events_stats(runtime: Runtime, bundle_factory, container_id):
    config = base_config()
    config["linux"]["resources"]["memory"] = {"limit": 64 << 20}
    bundle = bundle_factory(["sleep", "60"], config)
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    result = runtime.run("events", "--stats", container_id)
    assert result.returncode == 0, result.stderr
    event = json.loads(result.stdout)
    assert event["type"] == "stats" and event["id"] == container_id
    data = event["data"]
    assert data["memory"]["usage"]["limit"] == 64 << 20
    assert data["memory"]["usage"]["usage"] > 0
    assert data["pids"]["current"] >= 1
    assert data["cpu"]["usage"]["total"] > 0


def test_update_from_json_on_stdin(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["sleep", "60"])
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    resources = {"memory": {"limit": 48 << 20}, "pids": {"limit": 30}}
    result = runtime.run("update", "--resources", "-", container_id,
                         input=json.dumps(resources).encode(), stdin=None)
    assert result.returncode == 0, result.stderr
    pid = runtime.state(container_id)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        pids_path = next(line.split(":", 2)[2].strip() for line in f if ":pids:" in line)
    with open(f"/sys/fs/cgroup/pids{pids_path}/pids.max") as f:
        assert f.read().strip() == "30"


def test_no_pivot(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["sh", "-c", "ls /; cat /proc/self/mountinfo | wc -l"])
    result = runtime.run("run", "--no-pivot", "--bundle", str(bundle), container_id)
    assert result.returncode == 0, result.stderr
    assert "bin" in result.stdout.split()
    assert "work" not in result.stdout.split()


def _console(tmp_path: Path):
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    received: list[int] = []

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            received.append(recv_fd(conn))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return path, server, thread, received


def _read_until(fd: int, marker: bytes, timeout: float = 5) -> bytes:
    output = b""
    deadline = time.monotonic() + timeout
    while marker not in output and time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    return output


def test_exec_with_a_terminal(runtime: Runtime, bundle_factory, container_id, tmp_path: Path):
    bundle = bundle_factory(["sleep", "60"])
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    path, server, thread, received = _console(tmp_path)
    try:
        result = runtime.run("exec", "--tty", "--detach", "--console-socket", path, container_id,
                             "sh", "-c", "tty; stty size; echo done")
        thread.join(10)
        assert result.returncode == 0, result.stderr
        output = _read_until(received[0], b"done")
        os.close(received[0])
    finally:
        server.close()
    assert b"/dev/pts/" in output
    assert b"done" in output


def test_log_file_in_json(runtime: Runtime, tmp_path: Path):
    log = tmp_path / "runtime.log"
    result = subprocess.run([runtime.binary, "--root", str(runtime.root), "--log", str(log),
                             "--log-format", "json", "state", "no-such-container"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(e["level"] == "error" and "not exist" in e["msg"] for e in entries)
