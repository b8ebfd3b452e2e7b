"""Fixtures of the shimd integration tests: a real shimd per test, in temporary roots.

Import the fixtures into a test module by name. Each shimd gets its own --root,
--state and --address under a short /tmp directory (unix socket paths are limited to
108 bytes); teardown deletes what the test left, stops shimd, then checks that no
monitor, container process, mount, runtime state or cgroup of the test remains.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shim.client import Client, Mount
from tests.support.rootfs import copy_rootfs
from tests.support.runtime import binary_for

ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = ["runc", "lowrun"]


def _cgroup_dirs(prefix: str) -> list[str]:
    found = []
    for ctl in os.listdir("/sys/fs/cgroup"):
        base = Path("/sys/fs/cgroup") / ctl
        if base.is_dir() and not base.is_symlink():
            found += [str(p) for p in base.glob(f"{prefix}*")]
    return found


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            cwd = ""
        if text.encode() in cmdline or cwd.startswith(text):  # forked monitors: their cwd
            pids.append(int(entry))
    return pids


class Shimd:
    """One shimd process and its directories."""

    def __init__(self, runtime: str, binary: str) -> None:
        self.runtime = runtime
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="shim-", dir="/tmp"))
        self.root = self.dir / "root"
        self.state = self.dir / "state"
        self.address = self.dir / "shim.sock"
        self.tag = uuid.uuid4().hex[:6]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "shimd.log"

    def start(self, *extra: str) -> Client:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shim.daemon", "--root", str(self.root),
                 "--state", str(self.state), "--address", str(self.address),
                 "--runtime", self.binary, "--log-level", "debug", *extra],
                cwd=ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        client = Client(str(self.address), timeout=60)
        deadline = time.monotonic() + 20
        while not self.address.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("shimd did not start:\n" + self.log.read_text())
            time.sleep(0.05)
        client.wait_ready(20)
        return client

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def container_name(self, name: str = "c") -> str:
        """A unique container id (cgroup names are global: tests must not collide)."""
        return f"{name}-{self.tag}-{uuid.uuid4().hex[:6]}"

    def monitor_pids(self) -> list[int]:
        return _processes_mentioning(str(self.state / "tasks"))

    def cleanup(self) -> list[str]:
        """Remove whatever is left; returns descriptions of what was left (leaks)."""
        leaks: list[str] = []
        tasks_dir = self.state / "tasks"
        for info in tasks_dir.glob("*/*/task.json") if tasks_dir.exists() else []:
            leaks.append(f"task left: {info.parent}")
            data = json.loads(info.read_text())
            subprocess.run([data["runtime"], "--root", data["runtime_root"], "delete",
                            "--force", data["id"]], capture_output=True, check=False)
        for pid in _processes_mentioning(str(self.state)):  # monitors, the zygote
            leaks.append(f"process left: {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        runtime_root = self.state / "runtime"
        for state_file in runtime_root.glob("*/*/*/state.json") if runtime_root.exists() else []:
            leaks.append(f"runtime state left: {state_file.parent}")
        with open("/proc/self/mountinfo") as fh:
            mounts = [line.split()[4] for line in fh if str(self.dir) in line.split()[4]]
        for target in sorted(mounts, reverse=True):
            leaks.append(f"mount left: {target}")
            subprocess.run(["umount", "-l", target], check=False)
        for cg in _cgroup_dirs(f"berth-*-{self.tag}-"):
            leaks.append(f"cgroup left: {cg}")
            with contextlib.suppress(OSError):
                os.rmdir(cg)
        shutil.rmtree(self.dir, ignore_errors=True)
        return leaks


def runtime_binary(name: str) -> str:
    binary = binary_for(name)
    if binary is None:
        pytest.skip(f"{name} is not installed")
    return binary


@pytest.fixture(params=RUNTIMES)
def shim_runtime(request: pytest.FixtureRequest) -> str:
    """Each shimd test runs with runc and with lowrun as the OCI runtime."""
    return str(request.param)


@pytest.fixture
def shimd(shim_runtime: str) -> Iterator[Shimd]:
    daemon = Shimd(shim_runtime, runtime_binary(shim_runtime))
    try:
        yield daemon
    finally:
        client = Client(str(daemon.address), timeout=30)
        if daemon.proc is not None and daemon.proc.poll() is None:
            _delete_everything(client, daemon.root)
        client.close()
        daemon.stop()
        leaks = daemon.cleanup()
        assert not leaks, "the test left: " + "; ".join(leaks)


def _delete_everything(client: Client, root: Path) -> None:
    """Best effort: the test failed half-way; the leak check still reports its tasks."""
    meta = root / "metadata"
    for ns_dir in meta.iterdir() if meta.exists() else []:
        c = client.with_namespace(ns_dir.name)
        try:
            for task in c.list_tasks():
                c.delete_task(task.container_id, force=True)
            for container in c.list_containers():
                c.delete_container(container.id)
        except Exception:
            pass


@pytest.fixture
def client(shimd: Shimd) -> Iterator[Client]:
    c = shimd.start()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def rootfs(busybox_rootfs: Path, tmp_path: Path) -> Path:
    """A private copy of the busybox rootfs."""
    return copy_rootfs(busybox_rootfs, tmp_path / "rootfs")


def run_container(client: Client, cid: str, args: list[str], rootfs: Path,
                  spec: dict[str, Any] | None = None,
                  rootfs_mounts: list[Mount] | None = None, **task: Any) -> int:
    """Create the container and its task (not started); returns the init pid. The
    rootfs is `rootfs` bind-mounted unless `rootfs_mounts` says otherwise."""
    overlay = spec or {}
    overlay.setdefault("process", {})["args"] = args
    client.create_container(cid, overlay)
    return client.create_task(cid, rootfs=rootfs_mounts or [Mount("bind", str(rootfs))],
                              **task)


def remove(client: Client, cid: str) -> None:
    client.delete_task(cid, force=True)
    client.delete_container(cid)
