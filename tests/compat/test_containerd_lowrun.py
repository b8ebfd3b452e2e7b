"""lowrun under containerd 1.6: `ctr` drives the runc v2 shim, which calls lowrun as runc.

Every test runs twice, with `--runc-binary` lowrun and with runc, against a private
containerd (tests/compat/containerd_support.py); a difference is lowrun's bug unless it
is explained in docs/lowrun.md ("lowrun under containerd").
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.containerd_support import CONTAINERD, Containerd, containerd_daemon
from tests.support.runtime import binary_for

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(CONTAINERD is None, reason="containerd is not installed")]

# ctr's default spec has no environment at all when there is no image; runc resolves
# args[0] only through PATH (lowrun would fall back to execvp's default), so set it.
ENV = ["--env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]


@pytest.fixture(params=["lowrun", "runc"])
def binary(request: pytest.FixtureRequest) -> str:
    found = binary_for(request.param)
    if found is None:
        pytest.skip(f"{request.param} is not installed")
    return found


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Containerd]:
    with containerd_daemon(tmp_path / "containerd") as daemon:
        yield daemon


def run_flags(daemon: Containerd, binary: str, rootfs: Path) -> list[str]:
    """The last flags of `ctr run`: `--rootfs` is a switch, and the directory after it is
    the positional IMAGE|ROOTFS, so the container id must follow at once."""
    return [*daemon.runtime_flags(binary), *ENV, "--rootfs", str(rootfs)]


def start_detached(daemon: Containerd, binary: str, rootfs: Path, cid: str,
                   *args: str) -> None:
    daemon.run("run", "-d", *run_flags(daemon, binary, rootfs), cid, *args, check=True)
    daemon.note_shims()
    daemon.wait_status(cid, "RUNNING")


def fifo(daemon: Containerd) -> list[str]:
    """`ctr task exec` makes its io fifos under /run/containerd/fifo unless told."""
    return ["--fifo-dir", str(daemon.fifo_dir)]


def exec_in(daemon: Containerd, cid: str, exec_id: str, *cmd: str,
            detach: bool = False) -> subprocess.CompletedProcess[str]:
    """`ctr task exec --exec-id EXEC_ID [-d] CID CMD...`, its io fifos under our root."""
    return daemon.run("task", "exec", *fifo(daemon), *(["-d"] if detach else []),
                      "--exec-id", exec_id, cid, *cmd)


def remove(daemon: Containerd, cid: str) -> None:
    daemon.run("task", "delete", cid, check=True)
    daemon.run("containers", "delete", cid, check=True)


def test_run_rm_prints_and_leaves_nothing(containerd, binary, busybox_rootfs, container_id):
    host_net = os.readlink("/proc/self/ns/net")
    out = containerd.run("run", "--rm", *run_flags(containerd, binary, busybox_rootfs),
                         container_id, "sh", "-c",
                         "echo hello; readlink /proc/self/ns/net; "
                         "tail -n +3 /proc/net/dev | cut -d: -f1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0] == "hello"
    assert lines[1].startswith("net:[") and lines[1] != host_net, "a network namespace of its own"
    assert lines[2:] == ["lo"], "and nothing in it but lo"
    assert containerd.traces(container_id) == []
    assert containerd.run("containers", "ls", "-q").stdout.split() == []


def test_exit_code_propagates(containerd, binary, busybox_rootfs, container_id):
    out = containerd.run("run", "--rm", *run_flags(containerd, binary, busybox_rootfs),
                         container_id, "sh", "-c", "echo on-stderr >&2; exit 7")
    assert out.returncode == 7
    assert "on-stderr" in out.stderr
    assert containerd.traces(container_id) == []


def test_missing_executable_fails_create_cleanly(containerd, binary, busybox_rootfs,
                                                 container_id):
    out = containerd.run("run", "--rm", *run_flags(containerd, binary, busybox_rootfs),
                         container_id, "/bin/no-such-program")
    assert out.returncode != 0
    assert "OCI runtime create failed" in out.stderr
    assert "no-such-program" in out.stderr, "the runtime's error reaches ctr"
    containerd.run("containers", "delete", container_id)
    assert containerd.traces(container_id) == []


def test_detached_task_exec_ps_pause_metrics_kill(containerd, binary, busybox_rootfs,
                                                  container_id):
    cid = container_id
    start_detached(containerd, binary, busybox_rootfs, cid, "sleep", "1000")
    init_pid = int(next(line.split()[1] for line in
                        containerd.run("task", "ls").stdout.splitlines()[1:]
                        if line.split()[0] == cid))
    assert (containerd.runc_root / containerd.namespace / cid).is_dir()

    out = exec_in(containerd, cid, "x", "sh", "-c", "echo $$")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 1, "the exec'd shell is not the container's pid 1"
    out = exec_in(containerd, cid, "y", "sh", "-c", "exit 3")
    assert out.returncode == 3

    out = exec_in(containerd, cid, "bg", "sleep", "500", detach=True)
    assert out.returncode == 0, out.stderr
    ps = containerd.run("task", "ps", cid, check=True).stdout.splitlines()[1:]
    pids = {int(line.split()[0]) for line in ps}
    assert init_pid in pids and len(pids) == 2, ps
    assert any("ExecID:bg" in line for line in ps), ps

    containerd.run("task", "pause", cid, check=True)
    assert containerd.task_status(cid) == "PAUSED"
    freezer = Path(f"/sys/fs/cgroup/freezer/{containerd.namespace}/{cid}/freezer.state")
    if freezer.parent.is_dir():
        assert freezer.read_text().strip() == "FROZEN"
    containerd.run("task", "resume", cid, check=True)
    assert containerd.task_status(cid) == "RUNNING"

    metrics = containerd.run("task", "metrics", "--format", "json", cid)
    assert metrics.returncode == 0, metrics.stderr
    assert '"pids"' in metrics.stdout and '"current": 2' in metrics.stdout, metrics.stdout
    assert '"memory"' in metrics.stdout

    containerd.run("task", "kill", "--signal", "SIGKILL", cid, check=True)
    containerd.wait_status(cid, "STOPPED")
    deleted = containerd.run("task", "delete", cid)
    assert deleted.returncode == 0, deleted.stderr
    assert "exit code 137" in deleted.stderr, deleted.stderr
    containerd.run("containers", "delete", cid, check=True)
    assert containerd.traces(cid) == []
    assert list((containerd.runc_root / containerd.namespace).iterdir()) == []


def test_kill_reports_137_to_the_waiting_ctr(containerd, binary, busybox_rootfs,
                                             container_id):
    with tempfile.TemporaryFile() as err:
        waiting = subprocess.Popen(
            containerd.ctr("run", "--rm", *run_flags(containerd, binary, busybox_rootfs),
                           container_id, "sleep", "1000"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        try:
            containerd.wait_status(container_id, "RUNNING")
            containerd.note_shims()
            containerd.run("task", "kill", "-s", "SIGKILL", container_id, check=True)
            assert waiting.wait(30) == 137
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
    assert containerd.traces(container_id) == []


def test_sigterm_reaches_the_process(containerd, binary, busybox_rootfs, container_id):
    start_detached(containerd, binary, busybox_rootfs, container_id,
                   "sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.1; done")
    containerd.run("task", "kill", container_id, check=True)
    containerd.wait_status(container_id, "STOPPED")
    deleted = containerd.run("task", "delete", container_id)
    assert "exit code 42" in deleted.stderr, deleted.stderr
    containerd.run("containers", "delete", container_id, check=True)
    assert containerd.traces(container_id) == []


def drive_pty(argv: list[str], answers: dict[bytes, bytes], rows: int = 30, cols: int = 100,
              timeout: float = 30) -> tuple[bytes, int]:
    """Run argv on a new pty (its controlling terminal, of size rows x cols); when the
    output first shows a key of `answers`, type its value. Returns (output, exit code)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def take_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, preexec_fn=take_terminal)
    os.close(slave)
    out, pending = b"", dict(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every slave end is closed
                    break
                if not chunk:
                    break
                out += chunk
            for key in [k for k in pending if k in out]:
                os.write(master, pending.pop(key))
            if not ready and proc.poll() is not None:
                break
        return out, proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_tty_run(containerd, binary, busybox_rootfs, container_id):
    script = "tty; test -t 0 && echo STDIN-IS-TTY; read line; echo got=$line; exit 5"
    argv = containerd.ctr("run", "--rm", "-t", *run_flags(containerd, binary, busybox_rootfs),
                          container_id, "sh", "-c", script)
    out, code = drive_pty(argv, {b"STDIN-IS-TTY": b"typed\r"})
    text = out.decode(errors="replace").replace("\r", "")
    assert code == 5, text
    assert "/dev/pts/0\n" in text or "/dev/console\n" in text, text
    assert "got=typed\n" in text, text
    assert containerd.traces(container_id) == []


def test_tty_exec(containerd, binary, busybox_rootfs, container_id):
    start_detached(containerd, binary, busybox_rootfs, container_id, "sleep", "1000")
    argv = containerd.ctr("task", "exec", *fifo(containerd), "-t", "--exec-id", "t", container_id,
                          "sh", "-c", "test -t 1 && echo OUT-IS-TTY; read x; echo got=$x")
    out, code = drive_pty(argv, {b"OUT-IS-TTY": b"hi\r"})
    text = out.decode(errors="replace").replace("\r", "")
    assert code == 0, text
    assert "got=hi\n" in text, text
    containerd.run("task", "kill", "-s", "SIGKILL", container_id, check=True)
    containerd.wait_status(container_id, "STOPPED")
    remove(containerd, container_id)
    assert containerd.traces(container_id) == []


@pytest.fixture(scope="module")
def busybox_image_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """busybox:latest as a docker-save tar, built offline by shim.images."""
    from shim.content import ContentStore
    from shim.images import build, docker_archive
    from shim.images.store import ImageStore

    root = tmp_path_factory.mktemp("image")
    content, images = ContentStore(root / "store"), ImageStore(root / "store")
    build.build_busybox(content, images, "default")
    tar = root / "busybox.tar"
    docker_archive.save(content, images, "default", ["busybox:latest"], tar)
    return tar


def test_imported_image_on_an_overlay_snapshot(containerd, binary, busybox_image_tar,
                                               container_id):
    image = "docker.io/library/busybox:latest"
    containerd.run("images", "import", str(busybox_image_tar), check=True, timeout=120)
    out = containerd.run("run", "--rm", *containerd.runtime_flags(binary), *ENV, image,
                         container_id, "sh", "-c",
                         "echo from-image > /f; cat /f; grep ' / ' /proc/mounts")
    assert out.returncode == 0, out.stderr
    first, root_mount = out.stdout.splitlines()[:2]
    assert first == "from-image"
    assert root_mount.split()[2] == "overlay", root_mount
    snapshots = containerd.run("snapshots", "ls", check=True).stdout
    assert container_id not in snapshots, "the container's snapshot went with it"
    assert containerd.traces(container_id) == []


def test_resources_from_ctr_flags(containerd, binary, busybox_rootfs, container_id):
    cid = container_id
    daemon = containerd
    daemon.run("run", "-d", "--memory-limit", str(64 << 20), "--cpus", "0.5",
               *run_flags(daemon, binary, busybox_rootfs), cid, "sleep", "1000", check=True)
    daemon.note_shims()
    daemon.wait_status(cid, "RUNNING")
    cgroup = f"{daemon.namespace}/{cid}"
    memory = Path(f"/sys/fs/cgroup/memory/{cgroup}/memory.limit_in_bytes")
    quota = Path(f"/sys/fs/cgroup/cpu/{cgroup}/cpu.cfs_quota_us")
    period = Path(f"/sys/fs/cgroup/cpu/{cgroup}/cpu.cfs_period_us")
    assert int(memory.read_text()) == 64 << 20
    assert int(quota.read_text()) * 2 == int(period.read_text())
    metrics = daemon.run("task", "metrics", "--format", "json", cid, check=True).stdout
    assert f'"limit": {64 << 20}' in metrics, metrics
    daemon.run("task", "kill", "-s", "SIGKILL", cid, check=True)
    daemon.wait_status(cid, "STOPPED")
    remove(daemon, cid)
    assert daemon.traces(cid) == []


def test_paused_task_killed_and_force_deleted(containerd, binary, busybox_rootfs,
                                              container_id):
    """containerd's `task kill -s SIGKILL` and `task delete --force` of a paused task:
    the runtime must thaw it, or the shim waits for an exit that never comes."""
    killed, forced = f"{container_id}-k", f"{container_id}-f"
    for cid in (killed, forced):
        start_detached(containerd, binary, busybox_rootfs, cid, "sleep", "1000")
    out = exec_in(containerd, forced, "bg", "sleep", "500", detach=True)
    assert out.returncode == 0, out.stderr
    for cid in (killed, forced):
        containerd.run("task", "pause", cid, check=True)
        assert containerd.task_status(cid) == "PAUSED"

    containerd.run("task", "kill", "-s", "SIGKILL", killed, check=True)
    containerd.wait_status(killed, "STOPPED", timeout=10)
    assert "exit code 137" in containerd.run("task", "delete", killed, check=True).stderr
    containerd.run("containers", "delete", killed, check=True)

    containerd.run("task", "delete", "--force", forced, check=True, timeout=30)
    containerd.run("containers", "delete", forced, check=True)
    for cid in (killed, forced):
        assert containerd.traces(cid) == []


@pytest.mark.parametrize(("kill_args", "status"), [
    (["KILL"], "stopped"), (["TERM"], "paused"),
    (["--all", "KILL"], "stopped"), (["--all", "TERM"], "stopped"),
])
def test_kill_of_a_paused_container_as_runc(runtime, bundle_factory, container_id,
                                            kill_args, status):
    """The runc semantics the shim relies on: SIGKILL to the init of a paused container
    thaws it; `kill --all` freezes, signals and thaws (so even SIGTERM resumes it); a
    plain SIGTERM stays pending until `resume`."""
    bundle = bundle_factory(["sh", "-c", "trap 'exit 9' TERM; while :; do sleep 0.05; done"])
    assert runtime.run("run", "-d", "--bundle", str(bundle), container_id).returncode == 0
    assert runtime.run("pause", container_id).returncode == 0
    flags, sig = kill_args[:-1], kill_args[-1]
    killed = runtime.run("kill", *flags, container_id, sig)
    assert killed.returncode == 0, killed.stderr
    deadline = time.monotonic() + 5
    while (seen := runtime.state(container_id)["status"]) != status:
        assert time.monotonic() < deadline, f"{seen}, not {status}"
        time.sleep(0.02)
    time.sleep(0.2)
    assert runtime.state(container_id)["status"] == status, "and it stays so"
    assert runtime.run("delete", "--force", container_id).returncode == 0


PROBE = ("id; grep -E 'CapEff|CapBnd|Seccomp:|NoNewPrivs' /proc/self/status; "
         "touch /written 2>&1; unshare -m true 2>/dev/null; echo unshare=$?; pwd; "
         "ls /dev | wc -l; cat /mnt/f 2>/dev/null; grep -c . /proc/self/mountinfo")


@pytest.mark.parametrize("flags", [
    [], ["--seccomp"], ["--seccomp", "--cap-add", "CAP_SYS_ADMIN"], ["--privileged"],
    ["--read-only"], ["--no-pivot"], ["--cwd", "/tmp"],
    ["--cap-add", "CAP_SYS_ADMIN", "--cap-drop", "CAP_CHOWN"], ["--allow-new-privs"],
    ["--device", "/dev/null"], ["--mount", "type=bind,src=SHARED,dst=/mnt,options=rbind:ro"],
], ids=lambda f: "-".join(a.split(",")[0].lstrip("-") for a in f) or "default")
def test_ctr_flags_make_the_same_container(containerd, busybox_rootfs, tmp_path, flags):
    """What ctr's spec options turn into, seen from inside, is the same with lowrun as
    with runc: user, capabilities, seccomp, no_new_privs, read-only root, cwd, devices,
    bind mounts and the number of mounts."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "f").write_text("from the host\n")
    flags = [f.replace("SHARED", str(shared)) for f in flags]
    seen = {}
    for name in ("lowrun", "runc"):
        binary = binary_for(name)
        if binary is None:
            pytest.skip(f"{name} is not installed")
        cid = f"{name}-{os.getpid()}-{time.monotonic_ns()}"
        out = containerd.run("run", "--rm", *flags,
                             *run_flags(containerd, binary, busybox_rootfs), cid, "sh", "-c", PROBE)
        seen[name] = (out.returncode, out.stdout, out.stderr)
        assert containerd.traces(cid) == []
    assert seen["lowrun"] == seen["runc"]
    assert seen["runc"][0] == 0, seen["runc"][2]


def test_exec_options_and_errors(containerd, binary, busybox_rootfs, container_id):
    cid = container_id
    start_detached(containerd, binary, busybox_rootfs, cid, "sleep", "1000")
    fifo_dir = fifo(containerd)
    out = containerd.run("task", "exec", *fifo_dir, "--exec-id", "c", "--cwd", "/tmp",
                         "--user", "65534", cid, "sh", "-c", "pwd; id -u; id -g")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["/tmp", "65534", "65534"]
    missing = exec_in(containerd, cid, "m", "/bin/no-such-program")
    assert missing.returncode != 0
    assert "OCI runtime exec failed" in missing.stderr and "no-such-program" in missing.stderr
    containerd.run("task", "pause", cid, check=True)
    refused = exec_in(containerd, cid, "p", "true")
    assert refused.returncode != 0 and "paused" in refused.stderr, refused.stderr
    containerd.run("task", "resume", cid, check=True)
    assert exec_in(containerd, cid, "after", "true").returncode == 0
    containerd.run("task", "kill", "-s", "SIGKILL", cid, check=True)
    containerd.wait_status(cid, "STOPPED")
    remove(containerd, cid)
    assert containerd.traces(cid) == []


def test_stdin_reaches_the_process_and_its_end_too(containerd, binary, busybox_rootfs,
                                                   container_id):
    """Input written once the task runs. (With input that ends at once, `echo x | ctr run`
    may hang with runc as well as lowrun: ctr 1.6 closes the task's stdin only if the
    end comes after its NewTask call returned.)"""
    with tempfile.TemporaryFile() as out:
        ctr = subprocess.Popen(
            containerd.ctr("run", "--rm", *run_flags(containerd, binary, busybox_rootfs),
                           container_id, "sh", "-c", "wc -l; echo done"),
            stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
        try:
            containerd.wait_status(container_id, "RUNNING")
            containerd.note_shims()
            assert ctr.stdin is not None
            ctr.stdin.write(b"one\ntwo\nthree\n")
            ctr.stdin.close()
            assert ctr.wait(30) == 0
        finally:
            if ctr.poll() is None:
                ctr.kill()
                ctr.wait()
        out.seek(0)
        assert out.read().split() == [b"3", b"done"]
    assert containerd.traces(container_id) == []


def test_parallel_runs(containerd, binary, busybox_rootfs, container_id):
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> str:
        cid = f"{container_id}-{i}"
        out = containerd.run("run", "--rm", *run_flags(containerd, binary, busybox_rootfs),
                             cid, "sh", "-c", f"echo {i}")
        assert out.returncode == 0, out.stderr
        assert containerd.traces(cid) == []
        printed: str = out.stdout.strip()
        return printed

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(one, range(12))) == [str(i) for i in range(12)]
    assert list((containerd.runc_root / containerd.namespace).iterdir()) == []
