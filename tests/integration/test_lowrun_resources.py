"""cgroup limits as the kernel enforces them, with lowrun and with runc."""

from __future__ import annotations

import time

from tests.support.bundle import base_config
from tests.support.runtime import Runtime

MiB = 1024 * 1024


def cgroup_dir(pid: int, controller: str) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return f"/sys/fs/cgroup/{controller}{path}"
    raise AssertionError(f"no {controller} cgroup for {pid}")


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def test_memory_limit_as_the_kernel_reports_it(runtime: Runtime, bundle_factory, container_id):
    config = base_config()
    config["linux"]["resources"]["memory"] = {"limit": 64 * MiB, "reservation": 32 * MiB}
    bundle = bundle_factory(["sleep", "60"], config)
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    pid = runtime.state(container_id)["pid"]
    memory = cgroup_dir(pid, "memory")
    assert read(f"{memory}/memory.limit_in_bytes") == str(64 * MiB)
    assert read(f"{memory}/memory.soft_limit_in_bytes") == str(32 * MiB)
    inside = runtime.run("exec", container_id, "cat",
                         "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert inside.stdout.strip() == str(64 * MiB), inside.stderr


def test_update_changes_the_memory_limit(runtime: Runtime, bundle_factory, container_id):
    config = base_config()
    config["linux"]["resources"]["memory"] = {"limit": 64 * MiB}
    bundle = bundle_factory(["sleep", "60"], config)
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    result = runtime.run("update", "--memory", str(96 * MiB), "--pids-limit", "50", container_id)
    assert result.returncode == 0, result.stderr
    pid = runtime.state(container_id)["pid"]
    assert read(f"{cgroup_dir(pid, 'memory')}/memory.limit_in_bytes") == str(96 * MiB)
    assert read(f"{cgroup_dir(pid, 'pids')}/pids.max") == "50"


def test_cpu_settings(runtime: Runtime, bundle_factory, container_id):
    config = base_config()
    config["linux"]["resources"]["cpu"] = {"shares": 512, "quota": 50000, "period": 100000,
                                           "cpus": "0"}
    bundle = bundle_factory(["sleep", "60"], config)
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    pid = runtime.state(container_id)["pid"]
    cpu = cgroup_dir(pid, "cpu")
    assert read(f"{cpu}/cpu.shares") == "512"
    assert read(f"{cpu}/cpu.cfs_quota_us") == "50000"
    assert read(f"{cpu}/cpu.cfs_period_us") == "100000"
    assert read(f"{cgroup_dir(pid, 'cpuset')}/cpuset.cpus") == "0"


def test_fork_bomb_is_stopped_by_the_pids_limit(runtime: Runtime, bundle_factory, container_id):
    config = base_config()
    config["linux"]["resources"]["pids"] = {"limit": 10}
    config["root"]["readonly"] = False
    # The inner shell forks until the kernel refuses (busybox sh then exits); the outer one
    # reads the count with builtins only, kills the sleeps, and shows the error.
    script = ("sh -c 'while true; do sleep 30 & done' 2>/tmp/err; echo rc=$?;"
              " read n < /sys/fs/cgroup/pids/pids.current; echo pids=$n; kill -9 -1; wait;"
              " cat /tmp/err")
    bundle = bundle_factory(["sh", "-c", script], config)
    result = runtime.run("run", "--bundle", str(bundle), container_id)
    lines = result.stdout.splitlines()
    assert lines[0] != "rc=0", result.stdout + result.stderr
    assert 1 < int(lines[1].removeprefix("pids=")) <= 10
    assert "can't fork" in result.stdout


def test_oom_killer_inside_the_limit(runtime: Runtime, bundle_factory, container_id):
    config = base_config()
    config["linux"]["resources"]["memory"] = {"limit": 16 * MiB, "swap": 16 * MiB}
    bundle = bundle_factory(["sleep", "60"], config)
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    result = runtime.run("exec", container_id, "tail", "/dev/zero", timeout=60)
    assert result.returncode == 137  # SIGKILL from the OOM killer
    pid = runtime.state(container_id)["pid"]
    oom = dict(line.split() for line in read(
        f"{cgroup_dir(pid, 'memory')}/memory.oom_control").splitlines())
    assert int(oom["oom_kill"]) >= 1
    assert runtime.state(container_id)["status"] == "running"  # only the hog died


def test_frozen_container_does_not_run(runtime: Runtime, bundle_factory, container_id):
    config = base_config()
    config["root"]["readonly"] = False
    bundle = bundle_factory(["sh", "-c", "while true; do echo x >> /tmp/tick; usleep 1000; done"],
                            config)
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    tick = bundle / "rootfs" / "tmp" / "tick"
    time.sleep(0.2)
    assert runtime.run("pause", container_id).returncode == 0
    frozen_size = tick.stat().st_size
    time.sleep(0.3)
    assert tick.stat().st_size == frozen_size
    assert runtime.run("resume", container_id).returncode == 0
    time.sleep(0.3)
    assert tick.stat().st_size > frozen_size


def test_cgroup_removed_on_delete(runtime: Runtime, bundle_factory, container_id):
    import os

    bundle = bundle_factory(["sleep", "60"])
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    pid = runtime.state(container_id)["pid"]
    dirs = [cgroup_dir(pid, c) for c in ("memory", "pids", "cpu", "freezer")]
    assert all(os.path.isdir(d) for d in dirs)
    assert runtime.run("delete", "--force", container_id).returncode == 0
    assert not any(os.path.isdir(d) for d in dirs)
