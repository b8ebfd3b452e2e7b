"""A private containerd 1.6 for tests: temporary root, state and socket, no CRI, no networking.

`containerd_daemon(work)` starts `/usr/bin/containerd` with a config that keeps every
path it writes under `work` (root, state, the `opt` plugin's directory) and disables
the CRI plugin (the only one that sets up networking: CNI) and the snapshotters that
probe the host (aufs, btrfs, zfs, devmapper). Tests drive it with `ctr`; the OCI
runtime is chosen per container with `ctr run --runc-binary`, its state goes to
`--runc-root` under `work`, and the io fifos to `--fifo-dir` under `work`.

Containers made by `ctr run` (without `--with-ns network:…` or `--net-host`) get a new,
empty network namespace: containerd's default spec lists one. No CNI plugin runs.

On teardown every task is killed and deleted, every container, image, snapshot and
namespace removed, containerd stopped, any shim still serving our socket killed by pid,
every mount under `work` detached and every cgroup under the test's namespace
(`/sys/fs/cgroup/*/NAMESPACE`, which runc creates as the parent of `NAMESPACE/ID` and
leaves behind) removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
SHIM = shutil.which("containerd-shim-runc-v2")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# containerd 1.6 puts shim sockets here whatever its state dir (shim.SocketAddress).
SHIM_SOCKET_DIR = Path("/run/containerd/s")

CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
]

[grpc]
  address = "{address}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"""


class ContainerdError(RuntimeError):
    """containerd did not start, or a `ctr` command failed where the test needed it."""


@dataclass
class Containerd:
    """One running containerd and the paths a test needs to drive it with `ctr`."""

    work: Path
    namespace: str
    process: subprocess.Popen[bytes]
    log: Path
    shim_pids: set[int] = field(default_factory=set)

    @property
    def address(self) -> Path:
        return self.work / "containerd.sock"

    @property
    def root(self) -> Path:
        return self.work / "root"

    @property
    def state(self) -> Path:
        return self.work / "state"

    @property
    def runc_root(self) -> Path:
        """Where the OCI runtime keeps its state (`--root`); one directory per namespace."""
        return self.work / "runc"

    @property
    def fifo_dir(self) -> Path:
        return self.work / "fifo"

    def bundle(self, container_id: str) -> Path:
        """The shim's bundle directory (config.json, rootfs, log.json) of a task."""
        return self.state / "io.containerd.runtime.v2.task" / self.namespace / container_id

    def ctr(self, *args: str) -> list[str]:
        """A `ctr` command line talking to this containerd in the test's namespace."""
        assert CTR is not None
        return [CTR, "--address", str(self.address), "--namespace", self.namespace, *args]

    def runtime_flags(self, binary: str) -> list[str]:
        """`ctr run` flags that make the runc v2 shim call `binary` with our roots."""
        return ["--runtime", "io.containerd.runc.v2", "--runc-binary", binary,
                "--runc-root", str(self.runc_root), "--fifo-dir", str(self.fifo_dir)]

    def run(self, *args: str, timeout: float = 60, check: bool = False,
            stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
        """Run `ctr ARGS`. Output goes through files, not pipes: a shim started by
        `ctr run -d` may inherit descriptors and hold a pipe open after ctr exits."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(self.ctr(*args), stdin=stdin, stdout=out, stderr=err,
                                  timeout=timeout)
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(
                proc.args, proc.returncode, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"))
        if check and result.returncode != 0:
            raise ContainerdError(f"{' '.join(args)} exited {result.returncode}: "
                                  f"{result.stderr.strip()}")
        return result

    def task_status(self, container_id: str) -> str | None:
        """RUNNING, PAUSED, STOPPED, CREATED... from `ctr task ls`; None when there is none."""
        for line in self.run("task", "ls", check=True).stdout.splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == container_id:
                return parts[2]
        return None

    def wait_status(self, container_id: str, status: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (seen := self.task_status(container_id)) != status:
            if time.monotonic() > deadline:
                raise ContainerdError(f"task {container_id} is {seen}, not {status}, after "
                                      f"{timeout}s")
            time.sleep(0.05)

    def note_shims(self) -> None:
        """Remember the pids of the shims serving this containerd (killed at teardown if
        they outlive it)."""
        self.shim_pids |= set(_shims_of(self.address))

    def shim_socket(self, container_id: str) -> Path:
        """The shim's socket for a container, as containerd 1.6 names it: the sha256 of
        `ADDRESS/NAMESPACE/ID` under /run/containerd/s."""
        key = os.path.join(str(self.address), self.namespace, container_id)
        return SHIM_SOCKET_DIR / hashlib.sha256(key.encode()).hexdigest()

    def traces(self, container_id: str) -> list[str]:
        """What a deleted container may have left: runtime state, the shim's bundle, its
        socket, cgroups, mounts and processes. Empty when it left nothing."""
        found: list[str] = []
        state_dir = self.runc_root / self.namespace / container_id
        if state_dir.exists():
            found.append(f"runtime state: {state_dir}")
        if self.bundle(container_id).exists():
            found.append(f"bundle: {self.bundle(container_id)}")
        if self.shim_socket(container_id).exists():
            found.append(f"shim socket: {self.shim_socket(container_id)}")
        for controller in _controllers():
            d = controller / self.namespace / container_id
            if d.exists():
                found.append(f"cgroup: {d}")
        marker = f"/{self.namespace}/{container_id}"
        for target in _mount_points():
            if marker in target or (container_id in target and str(self.work) in target):
                found.append(f"mount: {target}")
        for pid, cmdline in _processes():
            if f"-id\0{container_id}\0" in cmdline and str(self.address) in cmdline:
                found.append(f"shim {pid}")
        return found


def _controllers() -> list[Path]:
    return sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink())


def _mount_points() -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line.split()[1].replace("\\040", " ") for line in f]


def _processes() -> Iterator[tuple[int, str]]:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                yield int(entry), f.read().decode(errors="replace")
        except OSError:
            continue


def _shims_of(address: Path) -> list[int]:
    """Shims started for this containerd: their command line names our socket."""
    return [pid for pid, cmdline in _processes()
            if "containerd-shim" in cmdline and f"-address\0{address}\0" in cmdline]


def _wait_ready(daemon: Containerd, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if daemon.process.poll() is not None:
            raise ContainerdError(f"containerd exited {daemon.process.returncode}: "
                                  f"{daemon.log.read_text()[-2000:]}")
        if daemon.address.exists() and daemon.run("version", timeout=10).returncode == 0:
            return
        if time.monotonic() > deadline:
            raise ContainerdError(f"containerd did not answer on {daemon.address} in "
                                  f"{timeout}s")
        time.sleep(0.05)


def _remove_everything(daemon: Containerd) -> None:
    """Tasks, containers, images, snapshots and namespaces, through containerd's API. A
    step that hangs (a task that will not die) is given up after its timeout: what it
    leaves is stopped, unmounted and removed by the rest of the teardown."""

    def ctr(ns: str, *args: str, timeout: float = 30) -> str:
        try:
            return Containerd(daemon.work, ns, daemon.process, daemon.log).run(
                *args, timeout=timeout).stdout
        except subprocess.TimeoutExpired:
            return ""

    for ns in ctr(daemon.namespace, "namespaces", "ls", "-q").split():
        tasks = [line.split()[0] for line in ctr(ns, "task", "ls").splitlines()[1:]
                 if line.strip()]
        for task in tasks:
            ctr(ns, "task", "kill", "--all", "--signal", "SIGKILL", task)
        for task in tasks:
            ctr(ns, "task", "delete", "--force", task)
        containers = ctr(ns, "containers", "ls", "-q").split()
        if containers:
            ctr(ns, "containers", "delete", *containers)
        images = ctr(ns, "images", "ls", "-q").split()
        if images:
            ctr(ns, "images", "rm", "--sync", *images)
        for line in ctr(ns, "snapshots", "ls").splitlines()[1:]:
            if line.split():
                ctr(ns, "snapshots", "rm", line.split()[0])
        ctr(ns, "content", "prune", "references")
        ctr(daemon.namespace, "namespaces", "rm", ns)


def _shim_sockets(daemon: Containerd) -> list[Path]:
    """The shim sockets named in the bundles that are still there (the shim removes its
    socket and containerd the bundle when a task is deleted)."""
    sockets = []
    for address in (daemon.state / "io.containerd.runtime.v2.task").glob("*/*/address"):
        with contextlib.suppress(OSError):
            text = address.read_text().strip()
            if text.startswith("unix://"):
                sockets.append(Path(text[len("unix://"):]))
    return sockets


def _stop(daemon: Containerd) -> None:
    """Stop containerd, then any shim it left (a task that could not be deleted)."""
    sockets = _shim_sockets(daemon)
    if daemon.process.poll() is None:
        daemon.process.send_signal(signal.SIGTERM)
        try:
            daemon.process.wait(20)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait(10)
    for pid in daemon.shim_pids | set(_shims_of(daemon.address)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for socket in sockets:
        with contextlib.suppress(FileNotFoundError):
            socket.unlink()


def _unmount_under(work: Path) -> None:
    prefix = str(work) + "/"
    for target in sorted((t for t in _mount_points() if t.startswith(prefix)),
                         key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


def _kill_leftover_processes(namespace: str) -> None:
    """After a failed test: thaw and SIGKILL what is still in the namespace's cgroups
    (containers whose shim is gone). Only our own, unique namespace is touched."""
    freezer = CGROUP_ROOT / "freezer" / namespace
    if freezer.is_dir():
        for d, _, _ in os.walk(freezer):
            with contextlib.suppress(OSError):
                (Path(d) / "freezer.state").write_text("THAWED")
    pids_root = CGROUP_ROOT / "pids" / namespace
    for d, _, _ in os.walk(pids_root):
        with contextlib.suppress(OSError):
            for pid in (Path(d) / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def _remove_cgroups(namespace: str) -> list[str]:
    """rmdir every cgroup under NAMESPACE in every hierarchy, deepest first; the ones
    that will not go (a process still inside) are returned."""
    _kill_leftover_processes(namespace)
    stuck: list[str] = []
    for controller in _controllers():
        top = controller / namespace
        if not top.is_dir():
            continue
        dirs = [Path(d) for d, _, _ in os.walk(top)]
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            for attempt in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if attempt == 49:
                        stuck.append(str(d))
                    time.sleep(0.1)
    return stuck


@contextlib.contextmanager
def containerd_daemon(work: Path, namespace: str | None = None) -> Iterator[Containerd]:
    """Start containerd under `work`, yield it once it answers, then remove all it made."""
    if CONTAINERD is None or CTR is None or SHIM is None:
        raise ContainerdError("containerd, ctr or containerd-shim-runc-v2 is not installed")
    work.mkdir(parents=True, exist_ok=True)
    for d in ("root", "state", "runc", "fifo", "opt"):
        (work / d).mkdir(exist_ok=True)
    config = work / "config.toml"
    config.write_text(CONFIG.format(root=work / "root", state=work / "state",
                                    address=work / "containerd.sock", opt=work / "opt"))
    log = work / "containerd.log"
    namespace = namespace or "berth-" + uuid.uuid4().hex[:10]
    with open(log, "wb") as log_file:
        process = subprocess.Popen([CONTAINERD, "--config", str(config), "--log-level", "debug"],
                                   stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                   start_new_session=True)
    daemon = Containerd(work=work, namespace=namespace, process=process, log=log)
    try:
        _wait_ready(daemon)
        yield daemon
    finally:
        try:
            if daemon.process.poll() is None:
                daemon.note_shims()
                _remove_everything(daemon)
        finally:
            _stop(daemon)
            _unmount_under(work)
            stuck = _remove_cgroups(namespace)
            if stuck:
                raise ContainerdError(f"cgroups still busy after teardown: {stuck}")


def time_ctr_run(runs: int, rootfs: Path, work: Path) -> dict[str, list[float]]:
    """Milliseconds of `ctr run --rm --rootfs DIR ID /bin/true` with lowrun and runc,
    interleaved on one private containerd, after one warm-up round."""
    from tests.support.runtime import binary_for

    times: dict[str, list[float]] = {"lowrun": [], "runc": []}
    with containerd_daemon(work) as daemon:
        for i in range(runs + 1):
            for name, samples in times.items():
                binary = binary_for(name)
                if binary is None:
                    continue
                started = time.perf_counter()
                subprocess.run(daemon.ctr("run", "--rm", *daemon.runtime_flags(binary),
                                          "--rootfs", str(rootfs), f"{name}{i}", "/bin/true"),
                               check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
                if i:
                    samples.append((time.perf_counter() - started) * 1000)
    return times


def main(argv: list[str]) -> int:
    """`python -m tests.compat.containerd_support [RUNS]`: the timing in docs/lowrun.md."""
    import statistics

    from tests.support.rootfs import build_busybox_rootfs

    runs = int(argv[0]) if argv else 20
    work = Path(tempfile.mkdtemp(prefix="ctr-time-"))
    try:
        times = time_ctr_run(runs, build_busybox_rootfs(work / "rootfs"), work / "containerd")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, ms in times.items():
        if ms:
            ms.sort()
            print(f"{name}: median {statistics.median(ms):.0f} ms, "
                  f"p90 {ms[int(len(ms) * 0.9) - 1]:.0f} ms, min {ms[0]:.0f} ms, n={len(ms)}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
