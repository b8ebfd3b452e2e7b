"""The cgroup v2 driver: one directory in the unified hierarchy, as runc's libcontainer/cgroups/fs2.

OCI resources were designed for v1; the v2 files and conversions follow runc:
cpu.shares → cpu.weight (linear map of [2, 262144] onto [1, 10000]), quota/period →
cpu.max, memory+swap → memory.swap.max = swap - limit, blkio weight → io.bfq.weight or
(converted) io.weight, throttles → io.max lines, hugepage limits → hugetlb.<size>.max.
Fields v2 has no file for are ignored with a warning where runc ignores them
(swappiness, disableOOMKiller, kernel memory, leaf weights, network) and refused where
ignoring would silently drop a guarantee (realtime cpu). Device rules become an eBPF
program (devices.py, ebpf.py), as runc does.
"""

from __future__ import annotations

import os
import time

from lowrun.cgroups import CgroupError, CgroupManager
from lowrun.cgroups.devices import compile_program, final_state
from lowrun.cgroups.fs import (
    CgroupFs,
    all_pids,
    read_keyed,
    read_optional,
    remove_tree,
    write_pid,
    write_value,
)
from lowrun.cgroups.host import CgroupHost, check_below, inner_path, v2_path
from lowrun.cgroups.resources import (
    R,
    Resources,
    blkio_weight_to_io_weight,
    parse_resources,
    rdma_line,
    shares_to_weight,
    swap_to_v2,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FREEZE_TIMEOUT = 5.0
DEFAULT_CFS_PERIOD = 100000  # the kernel's default, documented in cgroup-v2.rst


def _warn(message: str) -> None:
    import logging

    logging.getLogger("lowrun.cgroups").warning(message)


def _limit(value: int) -> str:
    return "max" if value == -1 else str(value)


class V2Manager(CgroupManager):
    driver = "v2"

    def __init__(self, path: str, root: str, fs: CgroupFs | None = None) -> None:
        self.path = path
        self.root = root
        self.fs = fs if fs is not None else CgroupFs()

    @classmethod
    def for_container(
        cls, host: CgroupHost, container_id: str, cgroups_path: str | None
    ) -> V2Manager:
        hierarchy = host.hierarchies[""]
        path = v2_path(hierarchy, inner_path(container_id, cgroups_path))
        return cls(path, hierarchy.mountpoint, host.fs)

    @classmethod
    def from_state(cls, state: dict[str, Any], *, root: str, fs: CgroupFs) -> V2Manager:
        path = state.get("path")
        if not isinstance(path, str):
            raise CgroupError("the container's state has no valid cgroup v2 path")
        return cls(check_below(path, root), root, fs)

    def to_state(self) -> dict[str, Any]:
        return {"driver": self.driver, "path": self.path, "root": self.root}

    # -- creation -----------------------------------------------------------------

    def _controllers(self, directory: str) -> list[str]:
        return (read_optional(self.fs, directory, "cgroup.controllers") or "").split()

    def _create(self) -> None:
        """mkdir each level below the root, enabling every available controller on the way.

        The leaf gets no subtree_control write: a cgroup with processes cannot delegate
        domain controllers (the no-internal-process rule).
        """
        rel = os.path.relpath(self.path, self.root)
        if rel.startswith("..") or rel == ".":
            raise CgroupError(f"cgroup {self.path} is not below {self.root}", path=self.path)
        wanted = self._controllers(self.root)
        enable = " ".join(f"+{c}" for c in wanted)
        current = self.root
        parts = rel.split("/")
        for part in parts:
            if enable:
                self._enable(current, enable)
            current = os.path.join(current, part)
            try:
                self.fs.mkdir(current)
            except OSError as e:
                raise CgroupError(
                    f"cannot create cgroup {current}: {os.strerror(e.errno or 0)}",
                    path=current,
                    errno=e.errno,
                ) from e

    def _enable(self, directory: str, enable: str) -> None:
        path = os.path.join(directory, "cgroup.subtree_control")
        try:
            self.fs.write(path, enable)
        except OSError:
            # One at a time: a controller that cannot be enabled here must not block the
            # others; a limit that needs it fails later, naming its field.
            for item in enable.split():
                try:
                    self.fs.write(path, item)
                except OSError:
                    continue

    def apply(self, pid: int) -> None:
        self._create()
        write_pid(self.fs, self.path, pid)

    # -- resources ----------------------------------------------------------------

    def set(self, resources: dict[str, Any], *, devices: list[Any] | None = None) -> None:
        res = parse_resources(resources, devices)
        if not self.fs.isdir(self.path):
            self._create()
        self._check_unsupported(res)
        self._set_pids(res)
        self._set_memory(res)
        self._set_io(res)
        self._set_cpu(res)
        self._set_devices(res)
        self._set_cpuset(res)
        self._set_hugetlb(res)
        self._set_rdma(res)
        self._set_unified(res)

    def _check_unsupported(self, res: Resources) -> None:
        if res.cpu_rt_runtime or res.cpu_rt_period:
            field = f"{R}.cpu.realtime{'Runtime' if res.cpu_rt_runtime else 'Period'}"
            raise CgroupError("real-time cpu limits are not available with cgroup v2", field=field)
        ignored = []
        if res.memory_swappiness is not None:
            ignored.append("memory.swappiness")
        if res.disable_oom_killer:
            ignored.append("memory.disableOOMKiller")
        if res.blkio_leaf_weight or any(wd.leaf_weight for wd in res.weight_devices):
            ignored.append("blockIO.leafWeight")
        if res.net_class_id or res.net_priorities:
            ignored.append("network")
        if ignored:
            _warn(
                f"cgroup v2 has no equivalent for {', '.join(ignored)} under {R}: ignored "
                "(as runc does)"
            )

    def _set_pids(self, res: Resources) -> None:
        if res.pids_limit:
            value = "max" if res.pids_limit < 0 else str(res.pids_limit)
            write_value(self.fs, self.path, "pids.max", value, f"{R}.pids.limit")

    def _set_memory(self, res: Resources) -> None:
        if not res.memory_set():
            return
        swap = swap_to_v2(res.memory_swap, res.memory_limit)
        if swap is not None:
            try:
                write_value(self.fs, self.path, "memory.swap.max", _limit(swap), f"{R}.memory.swap")
            except CgroupError as e:
                # No swap accounting: "no limit" or "no swap" is already what we have.
                if not (e.errno == 2 and swap in (-1, 0)):
                    raise
        if res.memory_limit:
            write_value(
                self.fs, self.path, "memory.max", _limit(res.memory_limit), f"{R}.memory.limit"
            )
        if res.memory_reservation:
            write_value(
                self.fs,
                self.path,
                "memory.low",
                _limit(res.memory_reservation),
                f"{R}.memory.reservation",
            )

    def _set_io(self, res: Resources) -> None:
        bfq = self.fs.exists(os.path.join(self.path, "io.bfq.weight"))
        if res.blkio_weight:
            field = f"{R}.blockIO.weight"
            if bfq:
                write_value(self.fs, self.path, "io.bfq.weight", str(res.blkio_weight), field)
            else:
                value = str(blkio_weight_to_io_weight(res.blkio_weight))
                write_value(self.fs, self.path, "io.weight", value, field)
        for wd in res.weight_devices:
            if not wd.weight:
                continue
            if bfq:
                line = f"{wd.major}:{wd.minor} {wd.weight}"
                write_value(self.fs, self.path, "io.bfq.weight", line, wd.field)
            else:
                line = f"{wd.major}:{wd.minor} {blkio_weight_to_io_weight(wd.weight)}"
                write_value(self.fs, self.path, "io.weight", line, wd.field)
        keys = {
            "throttleReadBpsDevice": "rbps",
            "throttleWriteBpsDevice": "wbps",
            "throttleReadIOPSDevice": "riops",
            "throttleWriteIOPSDevice": "wiops",
        }
        for key, name in keys.items():
            for td in res.throttles[key]:
                line = f"{td.major}:{td.minor} {name}={td.rate}"
                write_value(self.fs, self.path, "io.max", line, td.field)

    def _set_cpu(self, res: Resources) -> None:
        if res.cpu_shares:
            weight = shares_to_weight(res.cpu_shares)
            write_value(self.fs, self.path, "cpu.weight", str(weight), f"{R}.cpu.shares")
        if res.cpu_quota or res.cpu_period:
            quota = str(res.cpu_quota) if res.cpu_quota and res.cpu_quota > 0 else "max"
            period = res.cpu_period or DEFAULT_CFS_PERIOD
            field = f"{R}.cpu.{'quota' if res.cpu_quota else 'period'}"
            write_value(self.fs, self.path, "cpu.max", f"{quota} {period}", field)
        if res.cpu_idle is not None:
            write_value(self.fs, self.path, "cpu.idle", str(res.cpu_idle), f"{R}.cpu.idle")

    def _set_devices(self, res: Resources) -> None:
        """v2 has no device files: the rules become an eBPF program attached to the cgroup."""
        if res.devices is None:
            return
        code = compile_program(final_state(res.devices))
        try:
            self.fs.attach_device_program(self.path, code)
        except CgroupError as e:
            raise CgroupError(
                f"cannot install the device filter: {e.message}",
                field=f"{R}.devices",
                path=self.path,
                errno=e.errno,
            ) from e
        except OSError as e:
            raise CgroupError(
                f"cannot open {self.path}: {os.strerror(e.errno or 0)}",
                field=f"{R}.devices",
                path=self.path,
                errno=e.errno,
            ) from e

    def _set_cpuset(self, res: Resources) -> None:
        for name, value in (("cpus", res.cpus), ("mems", res.mems)):
            if value is not None:
                write_value(self.fs, self.path, f"cpuset.{name}", value, f"{R}.cpu.{name}")

    def _set_hugetlb(self, res: Resources) -> None:
        for size, limit, field in res.hugepage_limits:
            write_value(self.fs, self.path, f"hugetlb.{size}.max", str(limit), field)

    def _set_rdma(self, res: Resources) -> None:
        for name, handles, objects, field in res.rdma:
            write_value(self.fs, self.path, "rdma.max", rdma_line(name, handles, objects), field)

    def _set_unified(self, res: Resources) -> None:
        for key, value in (res.unified or {}).items():
            field = f"{R}.unified.{key}"
            try:
                write_value(self.fs, self.path, key, value, field)
            except CgroupError as e:
                controller = key.split(".", 1)[0]
                available = self._controllers(self.path)
                if e.errno in (1, 2) and controller != "cgroup" and controller not in available:
                    raise CgroupError(
                        f"cannot set {key}: the {controller!r} controller is not available "
                        f"in {self.path} (available: {' '.join(available) or 'none'})",
                        field=field,
                        path=e.path,
                        errno=e.errno,
                    ) from e
                raise

    # -- freezer ------------------------------------------------------------------

    def _events_frozen(self) -> bool | None:
        events = read_keyed(self.fs, self.path, "cgroup.events")
        if "frozen" not in events:
            return None
        return events["frozen"] == 1

    def _set_frozen(self, frozen: bool) -> None:
        if not self.fs.exists(os.path.join(self.path, "cgroup.freeze")):
            raise CgroupError(
                f"cannot {'freeze' if frozen else 'thaw'} {self.path}: no cgroup.freeze "
                "(the kernel is older than 5.2 or the cgroup is gone)",
                path=self.path,
            )
        write_value(self.fs, self.path, "cgroup.freeze", "1" if frozen else "0", None)
        deadline = time.monotonic() + FREEZE_TIMEOUT
        delay = 0.0005
        while self._events_frozen() is not frozen:
            if time.monotonic() > deadline:
                if frozen:
                    write_value(self.fs, self.path, "cgroup.freeze", "0", None)
                raise CgroupError(
                    f"{self.path} did not become {'frozen' if frozen else 'thawed'} within "
                    f"{FREEZE_TIMEOUT:.0f}s",
                    path=self.path,
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def frozen(self) -> bool:
        return read_optional(self.fs, self.path, "cgroup.freeze") == "1"

    # -- inspection ---------------------------------------------------------------

    def pids(self) -> list[int]:
        return all_pids(self.fs, self.path)

    def exists(self) -> bool:
        return self.fs.isdir(self.path)

    def oom_kill_count(self) -> int:
        return read_keyed(self.fs, self.path, "memory.events").get("oom_kill", 0)

    def stats(self) -> dict[str, Any]:
        from lowrun.cgroups.stats import v2_stats

        return v2_stats(self.fs, self.path)

    def destroy(self) -> None:
        remove_tree(self.fs, self.path)
