"""The cgroup v1 driver: one directory per mounted hierarchy, as runc's libcontainer/cgroups/fs.

On a hybrid host (cgroup2 also mounted at <root>/unified) the container joins the unified
hierarchy too, like runc 1.1, but nothing is set there: limits go to the v1 controllers.
A controller that is not mounted is skipped; a limit for it fails with a CgroupError
naming the field, as runc fails ("cannot set X limit: container could not join or
create cgroup") — the devices hierarchy alone is required, for safety, as in runc.
"""

from __future__ import annotations

import os
import time

from lowrun.cgroups import CgroupError, CgroupManager
from lowrun.cgroups.devices import DeviceState, final_state, v1_transition
from lowrun.cgroups.fs import (
    BUSY_TIMEOUT,
    CgroupFs,
    all_pids,
    read_keyed,
    read_optional,
    read_uint,
    read_value,
    remove_tree,
    write_pid,
    write_value,
)
from lowrun.cgroups.host import UNIFIED, CgroupHost, check_below, inner_path, v1_path
from lowrun.cgroups.resources import R, Resources, parse_resources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# runc's subsystem order: apply and set walk them in this order.
SUBSYSTEMS = (
    "cpuset",
    "devices",
    "memory",
    "cpu",
    "cpuacct",
    "pids",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "freezer",
    "rdma",
    "name=systemd",
)

FREEZE_TIMEOUT = 5.0


def _warn(message: str) -> None:
    import logging

    logging.getLogger("lowrun.cgroups").warning(message)


class V1Manager(CgroupManager):
    driver = "v1"

    def __init__(self, paths: dict[str, str], fs: CgroupFs | None = None) -> None:
        self.paths = dict(paths)
        self.fs = fs if fs is not None else CgroupFs()

    # -- construction -------------------------------------------------------------

    @classmethod
    def for_container(
        cls, host: CgroupHost, container_id: str, cgroups_path: str | None
    ) -> V1Manager:
        inner = inner_path(container_id, cgroups_path)
        if "devices" not in host.hierarchies:
            raise CgroupError(
                f"the devices cgroup hierarchy is not mounted under {host.root}; "
                "refusing to run a container without device restrictions (as runc does)"
            )
        paths = {
            name: v1_path(host.hierarchies[name], inner)
            for name in SUBSYSTEMS
            if name in host.hierarchies
        }
        if UNIFIED in host.hierarchies:
            paths[UNIFIED] = v1_path(host.hierarchies[UNIFIED], inner)
        return cls(paths, host.fs)

    @classmethod
    def from_state(cls, state: dict[str, Any], *, root: str, fs: CgroupFs) -> V1Manager:
        raw = state.get("paths", {}) if state else {}
        if not isinstance(raw, dict):
            raise CgroupError("the container's state has no valid cgroup paths")
        paths = {str(k): check_below(str(v), root) for k, v in raw.items()}
        return cls(paths, fs)

    def to_state(self) -> dict[str, Any]:
        return {"driver": self.driver, "paths": dict(self.paths)}

    # -- helpers ------------------------------------------------------------------

    def _dirs(self) -> list[str]:
        """Distinct directories, in subsystem order (co-mounted controllers share one)."""
        seen: list[str] = []
        for path in self.paths.values():
            if path not in seen:
                seen.append(path)
        return seen

    def _need(self, name: str, field: str) -> str:
        path = self.paths.get(name)
        if path is None:
            raise CgroupError(
                f"cannot set {name} limits: the {name} controller is not mounted as a "
                "cgroup v1 hierarchy on this host, so the container has no such cgroup "
                "(runc fails the same way)",
                field=field,
            )
        return path

    def _ensure_dirs(self) -> None:
        for path in self._dirs():
            created = self._make_dirs(path)
            if path == self.paths.get("cpuset"):
                self._fill_cpuset(created or [path])

    def _make_dirs(self, path: str) -> list[str]:
        missing: list[str] = []
        current = path
        while not self.fs.isdir(current):
            missing.append(current)
            parent = os.path.dirname(current)
            if parent == current:
                raise CgroupError(f"no cgroup hierarchy above {path}", path=path)
            current = parent
        created = []
        for d in reversed(missing):
            try:
                if self.fs.mkdir(d):
                    created.append(d)
            except OSError as e:
                raise CgroupError(
                    f"cannot create cgroup {d}: {os.strerror(e.errno or 0)}", path=d, errno=e.errno
                ) from e
        return created

    def _fill_cpuset(self, dirs: list[str]) -> None:
        """A new cpuset cgroup starts with no cpus and mems: copy the parent's, as runc does."""
        for d in dirs:
            parent = os.path.dirname(d)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if read_optional(self.fs, d, name) == "":
                    value = read_value(self.fs, parent, name)
                    write_value(self.fs, d, name, value, None)

    # -- CgroupManager --------------------------------------------------------------

    def apply(self, pid: int) -> None:
        self._ensure_dirs()
        for path in self._dirs():
            write_pid(self.fs, path, pid)

    def set(self, resources: dict[str, Any], *, devices: list[Any] | None = None) -> None:
        """Write `resources`; `devices` is `linux.devices`, whose nodes runc also allows."""
        res = parse_resources(resources, devices)
        if res.unified is not None:
            raise CgroupError(
                "unified (cgroup v2) resources cannot be used on a cgroup v1 host",
                field=f"{R}.unified",
            )
        self._ensure_dirs()
        self._set_cpuset(res)
        self._set_devices(res)
        self._set_memory(res)
        self._set_cpu(res)
        self._set_pids(res)
        self._set_blkio(res)
        self._set_hugetlb(res)
        self._set_net(res)
        self._set_rdma(res)

    def _set_cpuset(self, res: Resources) -> None:
        for name, value in (("cpus", res.cpus), ("mems", res.mems)):
            if value is not None:
                field = f"{R}.cpu.{name}"
                write_value(self.fs, self._need("cpuset", field), f"cpuset.{name}", value, field)

    def _set_devices(self, res: Resources) -> None:
        if res.devices is None:
            return
        field = f"{R}.devices"
        path = self._need("devices", field)
        target = final_state(res.devices)
        current = DeviceState.from_list(read_value(self.fs, path, "devices.list"))
        for name, line in v1_transition(current, target):
            write_value(self.fs, path, name, line, field)

    def _set_memory(self, res: Resources) -> None:
        if not (res.memory_set() or res.disable_oom_killer or res.memory_swappiness is not None):
            return
        path = self._need("memory", f"{R}.memory")
        limit = res.memory_limit or 0
        swap = res.memory_swap or 0
        if (
            limit == -1
            and swap == 0
            and self.fs.exists(os.path.join(path, "memory.memsw.limit_in_bytes"))
        ):
            swap = -1
        swap_first = False
        if limit != 0 and swap != 0:
            current = read_uint(self.fs, path, "memory.limit_in_bytes") or 0
            # Raising both: the new memory limit may exceed the old memory+swap limit, so
            # write swap first; lowering: memory first (the kernel keeps memory <= memsw).
            swap_first = swap == -1 or current < swap
        if swap_first:
            self._write_swap(path, swap)
            self._write_memory(path, limit)
        else:
            self._write_memory(path, limit)
            self._write_swap(path, swap)
        if res.memory_reservation:
            field = f"{R}.memory.reservation"
            write_value(
                self.fs, path, "memory.soft_limit_in_bytes", str(res.memory_reservation), field
            )
        if res.disable_oom_killer:
            write_value(self.fs, path, "memory.oom_control", "1", f"{R}.memory.disableOOMKiller")
        if res.memory_swappiness is not None:
            write_value(
                self.fs,
                path,
                "memory.swappiness",
                str(res.memory_swappiness),
                f"{R}.memory.swappiness",
            )

    def _write_memory(self, path: str, limit: int) -> None:
        if limit == 0:
            return
        field = f"{R}.memory.limit"
        try:
            write_value(self.fs, path, "memory.limit_in_bytes", str(limit), field)
        except CgroupError as e:
            if e.errno != 16:  # EBUSY: below what the cgroup already uses
                raise
            usage = read_uint(self.fs, path, "memory.usage_in_bytes")
            peak = read_uint(self.fs, path, "memory.max_usage_in_bytes")
            raise CgroupError(
                f"cannot set the memory limit to {limit}: the cgroup already uses {usage} "
                f"bytes (peak {peak})",
                field=field,
                path=e.path,
                errno=e.errno,
            ) from e

    def _write_swap(self, path: str, swap: int) -> None:
        if swap == 0:
            return
        write_value(self.fs, path, "memory.memsw.limit_in_bytes", str(swap), f"{R}.memory.swap")

    def _set_cpu(self, res: Resources) -> None:
        if not res.cpu_set():
            return
        path = self._need("cpu", f"{R}.cpu")
        if res.cpu_shares:
            field = f"{R}.cpu.shares"
            write_value(self.fs, path, "cpu.shares", str(res.cpu_shares), field)
            got = read_uint(self.fs, path, "cpu.shares")
            if got is not None and got < res.cpu_shares:
                raise CgroupError(f"the maximum allowed cpu shares is {got}", field=field)
            if got is not None and got > res.cpu_shares:
                raise CgroupError(f"the minimum allowed cpu shares is {got}", field=field)
        period_pending = False
        if res.cpu_period:
            try:
                write_value(
                    self.fs, path, "cpu.cfs_period_us", str(res.cpu_period), f"{R}.cpu.period"
                )
            except CgroupError as e:
                # A smaller period can be refused until the quota is lowered: retry after it.
                if e.errno != 22 or not res.cpu_quota:
                    raise
                period_pending = True
        if res.cpu_quota:
            write_value(self.fs, path, "cpu.cfs_quota_us", str(res.cpu_quota), f"{R}.cpu.quota")
            if period_pending:
                write_value(
                    self.fs, path, "cpu.cfs_period_us", str(res.cpu_period), f"{R}.cpu.period"
                )
        if res.cpu_rt_period:
            write_value(
                self.fs,
                path,
                "cpu.rt_period_us",
                str(res.cpu_rt_period),
                f"{R}.cpu.realtimePeriod",
            )
        if res.cpu_rt_runtime:
            write_value(
                self.fs,
                path,
                "cpu.rt_runtime_us",
                str(res.cpu_rt_runtime),
                f"{R}.cpu.realtimeRuntime",
            )
        if res.cpu_idle is not None:
            write_value(self.fs, path, "cpu.idle", str(res.cpu_idle), f"{R}.cpu.idle")

    def _set_pids(self, res: Resources) -> None:
        if not res.pids_limit:
            return
        field = f"{R}.pids.limit"
        value = "max" if res.pids_limit < 0 else str(res.pids_limit)
        write_value(self.fs, self._need("pids", field), "pids.max", value, field)

    def _set_blkio(self, res: Resources) -> None:
        if not res.blkio_set():
            return
        path = self._need("blkio", f"{R}.blockIO")
        # CFQ offers blkio.weight; with BFQ the files are blkio.bfq.weight* (runc's choice).
        if self.fs.exists(os.path.join(path, "blkio.weight")):
            weight, weight_device = "blkio.weight", "blkio.weight_device"
        else:
            weight, weight_device = "blkio.bfq.weight", "blkio.bfq.weight_device"
        if res.blkio_weight:
            write_value(self.fs, path, weight, str(res.blkio_weight), f"{R}.blockIO.weight")
        if res.blkio_leaf_weight:
            write_value(
                self.fs,
                path,
                "blkio.leaf_weight",
                str(res.blkio_leaf_weight),
                f"{R}.blockIO.leafWeight",
            )
        for wd in res.weight_devices:
            if wd.weight:
                line = f"{wd.major}:{wd.minor} {wd.weight}"
                write_value(self.fs, path, weight_device, line, wd.field)
            if wd.leaf_weight:
                line = f"{wd.major}:{wd.minor} {wd.leaf_weight}"
                write_value(self.fs, path, "blkio.leaf_weight_device", line, wd.field)
        files = {
            "throttleReadBpsDevice": "blkio.throttle.read_bps_device",
            "throttleWriteBpsDevice": "blkio.throttle.write_bps_device",
            "throttleReadIOPSDevice": "blkio.throttle.read_iops_device",
            "throttleWriteIOPSDevice": "blkio.throttle.write_iops_device",
        }
        for key, name in files.items():
            for td in res.throttles[key]:
                write_value(self.fs, path, name, f"{td.major}:{td.minor} {td.rate}", td.field)

    def _set_hugetlb(self, res: Resources) -> None:
        if not res.hugepage_limits:
            return
        path = self._need("hugetlb", f"{R}.hugepageLimits")
        for size, limit, field in res.hugepage_limits:
            write_value(self.fs, path, f"hugetlb.{size}.limit_in_bytes", str(limit), field)

    def _set_net(self, res: Resources) -> None:
        if res.net_class_id:
            field = f"{R}.network.classID"
            write_value(
                self.fs,
                self._need("net_cls", field),
                "net_cls.classid",
                str(res.net_class_id),
                field,
            )
        for i, (name, prio) in enumerate(res.net_priorities):
            field = f"{R}.network.priorities[{i}]"
            write_value(
                self.fs,
                self._need("net_prio", field),
                "net_prio.ifpriomap",
                f"{name} {prio}",
                field,
            )

    def _set_rdma(self, res: Resources) -> None:
        from lowrun.cgroups.resources import rdma_line

        for name, handles, objects, field in res.rdma:
            write_value(
                self.fs,
                self._need("rdma", field),
                "rdma.max",
                rdma_line(name, handles, objects),
                field,
            )

    # -- freezer ------------------------------------------------------------------

    def _freezer(self) -> str:
        path = self.paths.get("freezer")
        if path is None:
            raise CgroupError("cannot freeze: the freezer cgroup hierarchy is not mounted")
        return path

    def _state(self, path: str) -> str:
        return read_value(self.fs, path, "freezer.state")

    def freeze(self) -> None:
        path = self._freezer()
        deadline = time.monotonic() + FREEZE_TIMEOUT
        attempt = 0
        while True:
            write_value(self.fs, path, "freezer.state", "FROZEN", None)
            # A task stuck in an uninterruptible sleep can keep the cgroup FREEZING;
            # thawing and freezing again gets past it (the kernel's own advice, runc's loop).
            for _ in range(50):
                if self._state(path) == "FROZEN":
                    return
                time.sleep(0.0005 if attempt == 0 else 0.005)
            attempt += 1
            if time.monotonic() > deadline:
                write_value(self.fs, path, "freezer.state", "THAWED", None)
                raise CgroupError(
                    f"the cgroup {path} did not freeze within {FREEZE_TIMEOUT:.0f}s", path=path
                )
            write_value(self.fs, path, "freezer.state", "THAWED", None)
            time.sleep(0.01)

    def thaw(self) -> None:
        path = self._freezer()
        write_value(self.fs, path, "freezer.state", "THAWED", None)
        deadline = time.monotonic() + FREEZE_TIMEOUT
        while self._state(path) != "THAWED":
            if time.monotonic() > deadline:
                raise CgroupError(f"the cgroup {path} did not thaw", path=path)
            time.sleep(0.001)

    def frozen(self) -> bool:
        path = self.paths.get("freezer")
        if path is None:
            return False
        for _ in range(100):
            state = read_optional(self.fs, path, "freezer.state")
            if state != "FREEZING":
                return state == "FROZEN"
            time.sleep(0.001)
        return True

    # -- inspection ---------------------------------------------------------------

    def _main_path(self) -> str | None:
        for name in ("devices", "freezer", "memory", "pids", "cpu"):
            if name in self.paths:
                return self.paths[name]
        return next(iter(self.paths.values()), None)

    def pids(self) -> list[int]:
        path = self._main_path()
        return [] if path is None else all_pids(self.fs, path)

    def exists(self) -> bool:
        path = self._main_path()
        return path is not None and self.fs.isdir(path)

    def oom_kill_count(self) -> int:
        path = self.paths.get("memory")
        if path is None:
            return 0
        return read_keyed(self.fs, path, "memory.oom_control").get("oom_kill", 0)

    def stats(self) -> dict[str, Any]:
        from lowrun.cgroups.stats import v1_stats

        return v1_stats(self.fs, self.paths)

    def destroy(self) -> None:
        errors: list[CgroupError] = []
        deadline = time.monotonic() + BUSY_TIMEOUT
        for path in self._dirs():
            try:
                remove_tree(self.fs, path, deadline=deadline)
            except CgroupError as e:
                errors.append(e)
        if errors:
            raise errors[0]
