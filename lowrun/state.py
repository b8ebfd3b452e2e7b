"""A container's state on disk: `<root>/<id>/state.json`, and its status derived from the kernel.

The status is never stored: it is computed from the init process (alive? the same
process, by its start time?), the exec fifo (still there = created) and the freezer.
"""

from __future__ import annotations

import os
import time

from lowrun import jsonio
from lowrun.errors import ContainerExists, ContainerNotFound, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


DEFAULT_ROOT = "/run/lowrun"
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
_ID_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ID_REST = _ID_FIRST | frozenset("_+.-")

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"


def check_id(container_id: str) -> str:
    valid = (
        0 < len(container_id) <= 1024
        and container_id[0] in _ID_FIRST
        and all(c in _ID_REST for c in container_id)
    )
    if not valid:
        raise UsageError(
            f"invalid container id {container_id!r}: use letters, digits and '_+.-', "
            "starting with a letter or digit"
        )
    return container_id


class ContainerState:
    """What lowrun remembers about one container between commands."""

    FIELDS = ("id", "bundle", "rootfs", "pid", "pid_start", "created", "config", "cgroup",
              "namespaces", "owner", "annotations")

    def __init__(
        self,
        id: str,
        bundle: str,
        rootfs: str,
        pid: int,
        pid_start: int,
        created: str,
        config: dict[str, Any],
        cgroup: dict[str, Any] | None = None,
        namespaces: dict[str, str] | None = None,
        owner: str = "",
        annotations: dict[str, str] | None = None,
    ) -> None:
        self.id = id
        self.bundle = bundle
        self.rootfs = rootfs
        self.pid = pid
        self.pid_start = pid_start
        """The init's start time in clock ticks (/proc/PID/stat field 22): guards against
        pid reuse."""
        self.created = created
        self.config = config
        self.cgroup = cgroup or {}
        self.namespaces = namespaces or {}
        """Namespace type -> path the container's processes are in (for exec)."""
        self.owner = owner
        self.annotations = annotations or {}

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerState:
        return cls(**{k: data[k] for k in cls.FIELDS if k in data})


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None if the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class StateStore:
    """The runtime's --root directory: one sub-directory per container."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root

    def dir(self, container_id: str) -> str:
        return os.path.join(self.root, check_id(container_id))

    def fifo(self, container_id: str) -> str:
        return os.path.join(self.dir(container_id), EXEC_FIFO)

    def reserve(self, container_id: str) -> str:
        """Create the container's directory; fails if the id is taken."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        path = self.dir(container_id)
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise ContainerExists(container_id) from None
        return path

    def save(self, state: ContainerState) -> None:
        """Write state.json atomically (a reader sees the old or the new one). No fsync: the
        root is on tmpfs by design (/run/lowrun), and a container does not outlive a reboot."""
        path = os.path.join(self.dir(state.id), STATE_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(jsonio.dumps(state.to_json()))
        os.replace(tmp, path)

    def load(self, container_id: str) -> ContainerState:
        path = os.path.join(self.dir(container_id), STATE_FILE)
        try:
            with open(path) as f:
                return ContainerState.from_json(jsonio.loads(f.read()))
        except FileNotFoundError:
            raise ContainerNotFound(container_id) from None

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if os.path.exists(os.path.join(self.root, n, STATE_FILE)))

    def remove(self, container_id: str) -> None:
        path = self.dir(container_id)
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            return
        for name in names:
            os.unlink(os.path.join(path, name))
        os.rmdir(path)


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
