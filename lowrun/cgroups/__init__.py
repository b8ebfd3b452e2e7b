"""Cgroup managers: put a container's processes in cgroups and apply `linux.resources`.

Two drivers behind one interface, chosen by what the host mounts, as runc chooses:
`v1` when /sys/fs/cgroup holds one hierarchy per controller (a "hybrid" host that also
mounts cgroup2 at /sys/fs/cgroup/unified is still v1: runc 1.1 joins the unified
hierarchy too and sets nothing there), `v2` when /sys/fs/cgroup is itself cgroup2.

Callers create a manager, `apply(pid)` to create the directories and move the init in,
then `set(resources)` to write the limits (set also works first, but runc's order is
apply then set, while the init is still blocked). `to_state()` is what lowrun keeps in
state.json; `load_manager(state)` gives the manager back for pause, update, ps, delete.

The drivers and their helpers are imported on demand so that `import lowrun.cgroups`
stays cheap for the commands that never touch a cgroup.
"""

from __future__ import annotations

import abc

from lowrun.errors import LowrunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:
    from lowrun.cgroups.host import CgroupHost

DEFAULT_ROOT = "/sys/fs/cgroup"


class CgroupError(LowrunError):
    """A cgroup operation failed or a resource value is unusable.

    `field` is the JSON path in config.json the value came from (e.g.
    `$.linux.resources.memory.limit`), `path` the cgroup file or directory involved,
    `errno` the kernel's errno when a system call failed (else None).
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        path: str | None = None,
        errno: int | None = None,
    ) -> None:
        text = f"{field}: {message}" if field else message
        super().__init__(text)
        self.message = message
        self.field = field
        self.path = path
        self.errno = errno


class CgroupManager(abc.ABC):
    """One container's cgroup(s). Every method raises CgroupError on failure."""

    driver: str = ""

    @abc.abstractmethod
    def apply(self, pid: int) -> None:
        """Create the cgroup directories (and missing parents) and move `pid` into them."""

    @abc.abstractmethod
    def set(self, resources: dict[str, Any], *, devices: list[Any] | None = None) -> None:
        """Write OCI `linux.resources`; a bad value raises CgroupError naming its JSON path.

        `devices` is the spec's `linux.devices`: like runc, the device nodes a container
        is given are allowed in its device cgroup after the spec's rules and runc's defaults.
        """

    @abc.abstractmethod
    def freeze(self) -> None:
        """Freeze every process of the cgroup; returns once the kernel reports it frozen."""

    @abc.abstractmethod
    def thaw(self) -> None:
        """Thaw the cgroup; returns once the kernel reports it thawed."""

    @abc.abstractmethod
    def frozen(self) -> bool:
        """True when the cgroup is frozen (or freezing); False when thawed or absent."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Every pid in the cgroup and its sub-cgroups; [] when the cgroup is gone."""

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]:
        """Usage and limits, shaped like `runc events --stats` data (see docs/cgroups.md)."""

    @abc.abstractmethod
    def oom_kill_count(self) -> int:
        """How many processes the OOM killer killed in this cgroup (0 without memory cgroup)."""

    @abc.abstractmethod
    def destroy(self) -> None:
        """Remove the cgroup directories (sub-cgroups first); fine if they are already gone."""

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether the container's cgroup directory is still there."""

    @abc.abstractmethod
    def to_state(self) -> dict[str, Any]:
        """A JSON-able description from which `load_manager` rebuilds this manager."""


def create_manager(
    container_id: str,
    cgroups_path: str | None,
    *,
    root: str = DEFAULT_ROOT,
    host: CgroupHost | None = None,
) -> CgroupManager:
    """The manager for a new container, its paths computed as runc's fs/fs2 drivers do.

    `cgroups_path` is `linux.cgroupsPath`: absolute → under each hierarchy's root;
    relative → under the runtime's own cgroup (from /proc/self/cgroup); None or "" →
    the container id, relative. `host` describes the mounted hierarchies; by default it
    is read from /proc/self/mountinfo and /proc/self/cgroup (tests pass a fake one).
    """
    from lowrun.cgroups.host import detect_host

    if host is None:
        host = detect_host(root)
    if host.mode == "v2":
        from lowrun.cgroups.v2 import V2Manager

        return V2Manager.for_container(host, container_id, cgroups_path)
    from lowrun.cgroups.v1 import V1Manager

    return V1Manager.for_container(host, container_id, cgroups_path)


def load_manager(
    state: dict[str, Any],
    *,
    root: str = DEFAULT_ROOT,
    host: CgroupHost | None = None,
) -> CgroupManager:
    """Rebuild a manager from `to_state()` output (an empty dict: a manager of nothing)."""
    from lowrun.cgroups.host import real_fs

    fs = host.fs if host is not None else real_fs()
    driver = state.get("driver", "v1") if state else "v1"
    if driver == "v2":
        from lowrun.cgroups.v2 import V2Manager

        return V2Manager.from_state(state, root=root, fs=fs)
    if driver == "v1":
        from lowrun.cgroups.v1 import V1Manager

        return V1Manager.from_state(state, root=root, fs=fs)
    raise CgroupError(f"unknown cgroup driver {driver!r} in the container's state")
