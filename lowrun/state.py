"""A container's state on disk: `<root>/<id>/state.json`, and its status derived from the kernel.

The status is never stored: it is computed from the init process (alive? the same
process, by its start time?), the exec fifo (still there = created) and the freezer.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lowrun.errors import ContainerExists, ContainerNotFound, UsageError

DEFAULT_ROOT = "/run/lowrun"
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+.-]{0,1023}$")

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"


def check_id(container_id: str) -> str:
    if not _ID.match(container_id):
        raise UsageError(
            f"invalid container id {container_id!r}: use letters, digits and '_+.-', "
            "starting with a letter or digit"
        )
    return container_id


@dataclass
class ContainerState:
    """What lowrun remembers about one container between commands."""

    id: str
    bundle: str
    rootfs: str
    pid: int
    pid_start: int
    """The init's start time in clock ticks (/proc/PID/stat field 22): guards against pid reuse."""
    created: str
    config: dict[str, Any]
    cgroup: dict[str, Any] = field(default_factory=dict)
    namespaces: dict[str, str] = field(default_factory=dict)
    """Namespace type -> path the container's processes are in (for exec and for runc's state)."""
    owner: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerState:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


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
        self.root = Path(root)

    def dir(self, container_id: str) -> Path:
        return self.root / check_id(container_id)

    def fifo(self, container_id: str) -> Path:
        return self.dir(container_id) / EXEC_FIFO

    def reserve(self, container_id: str) -> Path:
        """Create the container's directory; fails if the id is taken."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.dir(container_id)
        try:
            path.mkdir(mode=0o711)
        except FileExistsError:
            raise ContainerExists(container_id) from None
        return path

    def save(self, state: ContainerState) -> None:
        path = self.dir(state.id) / STATE_FILE
        tmp = path.with_name(STATE_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(state.to_json(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load(self, container_id: str) -> ContainerState:
        path = self.dir(container_id) / STATE_FILE
        try:
            with open(path) as f:
                return ContainerState.from_json(json.load(f))
        except FileNotFoundError:
            raise ContainerNotFound(container_id) from None

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if (self.root / n / STATE_FILE).exists())

    def remove(self, container_id: str) -> None:
        path = self.dir(container_id)
        for name in os.listdir(path) if path.exists() else []:
            os.unlink(path / name)
        if path.exists():
            path.rmdir()


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
