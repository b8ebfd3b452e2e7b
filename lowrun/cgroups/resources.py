"""OCI `linux.resources` read once into plain values, with the JSON path of every field.

Both drivers consume a `Resources`; a wrong type or an out-of-range value fails here,
before any file is written, with a CgroupError naming e.g. `$.linux.resources.memory.limit`.
Zero means "not set" for the fields where runc treats it so (memory, cpu shares/quota,
blkio weights, pids limit), as runc's specconv does.

Also here: runc's v1→v2 conversions (cpu shares → cpu.weight, memory+swap → swap.max,
blkio weight → io.weight) and runc's default device rules.
"""

from __future__ import annotations

from lowrun.cgroups import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

R = "$.linux.resources"
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
UINT32_MAX = 2**32 - 1
UINT16_MAX = 2**16 - 1


def _warn(message: str) -> None:
    import logging

    logging.getLogger("lowrun.cgroups").warning(message)


def _obj(parent: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CgroupError(f"must be an object, not {type(value).__name__}", field=f"{where}.{key}")
    return value


def _list(parent: dict[str, Any], key: str, where: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise CgroupError(f"must be an array, not {type(value).__name__}", field=f"{where}.{key}")
    return value


def _int(parent: dict[str, Any], key: str, where: str, lo: int, hi: int) -> int | None:
    value = parent.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CgroupError(f"must be an integer, not {value!r}", field=f"{where}.{key}")
    if not lo <= value <= hi:
        raise CgroupError(f"{value} is out of range [{lo}, {hi}]", field=f"{where}.{key}")
    return value


def _str(parent: dict[str, Any], key: str, where: str) -> str | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CgroupError(f"must be a string, not {value!r}", field=f"{where}.{key}")
    return value


def _bool(parent: dict[str, Any], key: str, where: str) -> bool | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise CgroupError(f"must be true or false, not {value!r}", field=f"{where}.{key}")
    return value


class DeviceRule:
    """One `linux.resources.devices[]` entry; None major/minor is the wildcard."""

    __slots__ = ("access", "allow", "field", "major", "minor", "type")

    def __init__(
        self,
        allow: bool,
        type: str = "a",
        major: int | None = None,
        minor: int | None = None,
        access: str = "rwm",
        field: str = "",
    ) -> None:
        self.allow = allow
        self.type = type
        self.major = major
        self.minor = minor
        self.access = access
        self.field = field

    def v1_string(self) -> str:
        """The line for devices.allow / devices.deny, e.g. `c 1:3 rwm` or `a *:* rwm`."""
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"

    def key(self) -> tuple[bool, str, int | None, int | None, str]:
        return (self.allow, self.type, self.major, self.minor, "".join(sorted(self.access)))

    def __repr__(self) -> str:
        return f"DeviceRule({'allow' if self.allow else 'deny'} {self.v1_string()})"


# runc 1.1's AllowedDevices, appended after the spec's own rules (libcontainer/specconv).
DEFAULT_ALLOWED_DEVICES: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"),
    ("b", None, None, "m"),
    ("c", 1, 3, "rwm"),  # /dev/null
    ("c", 1, 8, "rwm"),  # /dev/random
    ("c", 1, 7, "rwm"),  # /dev/full
    ("c", 5, 0, "rwm"),  # /dev/tty
    ("c", 1, 5, "rwm"),  # /dev/zero
    ("c", 1, 9, "rwm"),  # /dev/urandom
    ("c", 136, None, "rwm"),  # /dev/pts/*
    ("c", 5, 2, "rwm"),  # /dev/ptmx
    ("c", 10, 200, "rwm"),  # /dev/net/tun
)


def default_device_rules() -> list[DeviceRule]:
    return [
        DeviceRule(True, t, ma, mi, acc, field="(runc default devices)")
        for t, ma, mi, acc in DEFAULT_ALLOWED_DEVICES
    ]


def _device_rule(entry: Any, where: str) -> DeviceRule:
    if not isinstance(entry, dict):
        raise CgroupError("must be an object", field=where)
    allow = _bool(entry, "allow", where)
    if allow is None:
        raise CgroupError("'allow' is required", field=where)
    dtype = _str(entry, "type", where) or "a"
    if dtype not in ("a", "b", "c"):
        raise CgroupError(f"type must be 'a', 'b' or 'c', not {dtype!r}", field=f"{where}.type")
    major = _int(entry, "major", where, -1, INT64_MAX)
    minor = _int(entry, "minor", where, -1, INT64_MAX)
    access = _str(entry, "access", where)
    if access is None or access == "":
        access = "rwm"
    if any(c not in "rwm" for c in access) or len(set(access)) != len(access):
        raise CgroupError(
            f"access must be letters from 'rwm', not {access!r}", field=f"{where}.access"
        )
    if dtype == "a":
        major = minor = None
    return DeviceRule(
        allow,
        dtype,
        None if major == -1 else major,
        None if minor == -1 else minor,
        access,
        field=where,
    )


def node_rules(linux_devices: list[Any] | None) -> list[DeviceRule]:
    """Allow rules for the `linux.devices` nodes a container gets (runc allows them too)."""
    rules = []
    for i, dev in enumerate(linux_devices or []):
        where = f"$.linux.devices[{i}]"
        if not isinstance(dev, dict):
            raise CgroupError("must be an object", field=where)
        dtype = _str(dev, "type", where)
        if dtype == "u":
            dtype = "c"
        if dtype not in ("c", "b"):
            continue  # fifos ("p") need no device cgroup rule
        major = _int(dev, "major", where, 0, INT64_MAX)
        minor = _int(dev, "minor", where, 0, INT64_MAX)
        rules.append(DeviceRule(True, dtype, major, minor, "rwm", field=where))
    return rules


class Throttle:
    __slots__ = ("field", "major", "minor", "rate")

    def __init__(self, major: int, minor: int, rate: int, field: str) -> None:
        self.major = major
        self.minor = minor
        self.rate = rate
        self.field = field


class WeightDevice:
    __slots__ = ("field", "leaf_weight", "major", "minor", "weight")

    def __init__(
        self, major: int, minor: int, weight: int | None, leaf_weight: int | None, field: str
    ) -> None:
        self.major = major
        self.minor = minor
        self.weight = weight
        self.leaf_weight = leaf_weight
        self.field = field


THROTTLE_KEYS = (
    "throttleReadBpsDevice",
    "throttleWriteBpsDevice",
    "throttleReadIOPSDevice",
    "throttleWriteIOPSDevice",
)


class Resources:
    """The resource values a driver writes; None = not given (leave the kernel's value)."""

    def __init__(self) -> None:
        self.memory_limit: int | None = None
        self.memory_reservation: int | None = None
        self.memory_swap: int | None = None
        self.memory_swappiness: int | None = None
        self.disable_oom_killer: bool = False
        self.cpu_shares: int | None = None
        self.cpu_quota: int | None = None
        self.cpu_period: int | None = None
        self.cpu_rt_runtime: int | None = None
        self.cpu_rt_period: int | None = None
        self.cpu_idle: int | None = None
        self.cpus: str | None = None
        self.mems: str | None = None
        self.pids_limit: int | None = None
        self.blkio_weight: int | None = None
        self.blkio_leaf_weight: int | None = None
        self.weight_devices: list[WeightDevice] = []
        self.throttles: dict[str, list[Throttle]] = {k: [] for k in THROTTLE_KEYS}
        self.hugepage_limits: list[tuple[str, int, str]] = []  # (page size, limit, field)
        self.net_class_id: int | None = None
        self.net_priorities: list[tuple[str, int]] = []
        self.rdma: list[tuple[str, int | None, int | None, str]] = []
        self.devices: list[DeviceRule] | None = None
        self.unified: dict[str, str] | None = None

    def memory_set(self) -> bool:
        return bool(self.memory_limit or self.memory_reservation or self.memory_swap)

    def cpu_set(self) -> bool:
        return bool(
            self.cpu_shares
            or self.cpu_quota
            or self.cpu_period
            or self.cpu_rt_runtime
            or self.cpu_rt_period
            or self.cpu_idle is not None
        )

    def blkio_set(self) -> bool:
        return bool(
            self.blkio_weight
            or self.blkio_leaf_weight
            or self.weight_devices
            or any(self.throttles.values())
        )


def parse_resources(
    resources: dict[str, Any] | None, linux_devices: list[Any] | None = None
) -> Resources:
    """Validate and normalise `linux.resources` (and the allow rules of `linux.devices`).

    Device rules are produced (spec rules + runc's defaults + the nodes) when the
    resources have a `devices` key or `linux_devices` is given (even empty): that is a
    create. An update without `devices` leaves the device cgroup as it is.
    """
    res = Resources()
    if resources is None:
        return res
    if not isinstance(resources, dict):
        raise CgroupError("must be an object", field=R)
    _parse_memory(res, resources)
    _parse_cpu(res, resources)
    pids = _obj(resources, "pids", R)
    if pids is not None:
        res.pids_limit = _int(pids, "limit", f"{R}.pids", -(2**63), INT64_MAX)
    _parse_blkio(res, resources)
    _parse_hugepages(res, resources)
    _parse_network(res, resources)
    _parse_rdma(res, resources)
    if resources.get("devices") is not None or linux_devices is not None:
        rules = [
            _device_rule(e, f"{R}.devices[{i}]")
            for i, e in enumerate(_list(resources, "devices", R))
        ]
        res.devices = rules + default_device_rules() + node_rules(linux_devices)
    unified = _obj(resources, "unified", R)
    if unified is not None:
        for k, v in unified.items():
            if not isinstance(v, str):
                raise CgroupError(f"value must be a string, not {v!r}", field=f"{R}.unified.{k}")
            if "/" in k or k in ("", ".", ".."):
                raise CgroupError(
                    "key must be a cgroup file name (no slashes)", field=f"{R}.unified.{k}"
                )
        res.unified = dict(unified)
    return res


def _parse_memory(res: Resources, resources: dict[str, Any]) -> None:
    where = f"{R}.memory"
    mem = _obj(resources, "memory", R)
    if mem is None:
        return
    res.memory_limit = _int(mem, "limit", where, -1, INT64_MAX)
    res.memory_reservation = _int(mem, "reservation", where, -1, INT64_MAX)
    res.memory_swap = _int(mem, "swap", where, -1, INT64_MAX)
    swappiness = _int(mem, "swappiness", where, -1, UINT64_MAX)
    if swappiness is not None and swappiness > 100:
        raise CgroupError(
            f"invalid value {swappiness}: the valid swappiness range is 0-100",
            field=f"{where}.swappiness",
        )
    res.memory_swappiness = None if swappiness == -1 else swappiness
    res.disable_oom_killer = bool(_bool(mem, "disableOOMKiller", where))
    for key in ("kernel", "kernelTCP"):
        if _int(mem, key, where, -1, INT64_MAX):
            _warn(f"{where}.{key}: kernel memory limits are deprecated and ignored (as runc does)")
    _bool(mem, "useHierarchy", where)
    _bool(mem, "checkBeforeUpdate", where)


def _parse_cpu(res: Resources, resources: dict[str, Any]) -> None:
    where = f"{R}.cpu"
    cpu = _obj(resources, "cpu", R)
    if cpu is None:
        return
    res.cpu_shares = _int(cpu, "shares", where, 0, UINT64_MAX)
    res.cpu_quota = _int(cpu, "quota", where, -1, INT64_MAX)
    res.cpu_period = _int(cpu, "period", where, 0, UINT64_MAX)
    res.cpu_rt_runtime = _int(cpu, "realtimeRuntime", where, -1, INT64_MAX)
    res.cpu_rt_period = _int(cpu, "realtimePeriod", where, 0, UINT64_MAX)
    res.cpu_idle = _int(cpu, "idle", where, -(2**63), INT64_MAX)
    res.cpus = _str(cpu, "cpus", where) or None
    res.mems = _str(cpu, "mems", where) or None


def _device_numbers(entry: Any, where: str) -> tuple[int, int]:
    if not isinstance(entry, dict):
        raise CgroupError("must be an object", field=where)
    major = _int(entry, "major", where, 0, INT64_MAX)
    minor = _int(entry, "minor", where, 0, INT64_MAX)
    if major is None or minor is None:
        raise CgroupError("'major' and 'minor' are required", field=where)
    return major, minor


def _parse_blkio(res: Resources, resources: dict[str, Any]) -> None:
    where = f"{R}.blockIO"
    blkio = _obj(resources, "blockIO", R)
    if blkio is None:
        return
    res.blkio_weight = _int(blkio, "weight", where, 0, UINT16_MAX)
    res.blkio_leaf_weight = _int(blkio, "leafWeight", where, 0, UINT16_MAX)
    for i, entry in enumerate(_list(blkio, "weightDevice", where)):
        f = f"{where}.weightDevice[{i}]"
        major, minor = _device_numbers(entry, f)
        res.weight_devices.append(
            WeightDevice(
                major,
                minor,
                _int(entry, "weight", f, 0, UINT16_MAX),
                _int(entry, "leafWeight", f, 0, UINT16_MAX),
                f,
            )
        )
    for key in THROTTLE_KEYS:
        for i, entry in enumerate(_list(blkio, key, where)):
            f = f"{where}.{key}[{i}]"
            major, minor = _device_numbers(entry, f)
            rate = _int(entry, "rate", f, 0, UINT64_MAX)
            if rate is None:
                raise CgroupError("'rate' is required", field=f)
            res.throttles[key].append(Throttle(major, minor, rate, f))


def _page_size_ok(size: str) -> bool:
    for unit in ("KB", "MB", "GB"):
        if size.endswith(unit):
            return size[: -len(unit)].isdigit()
    return False


def _parse_hugepages(res: Resources, resources: dict[str, Any]) -> None:
    for i, entry in enumerate(_list(resources, "hugepageLimits", R)):
        f = f"{R}.hugepageLimits[{i}]"
        if not isinstance(entry, dict):
            raise CgroupError("must be an object", field=f)
        size = _str(entry, "pageSize", f)
        limit = _int(entry, "limit", f, 0, UINT64_MAX)
        if size is None or limit is None:
            raise CgroupError("'pageSize' and 'limit' are required", field=f)
        if not _page_size_ok(size):
            raise CgroupError(
                f"page size {size!r} is not like '2MB' or '1GB'", field=f"{f}.pageSize"
            )
        res.hugepage_limits.append((size, limit, f))


def _parse_network(res: Resources, resources: dict[str, Any]) -> None:
    where = f"{R}.network"
    net = _obj(resources, "network", R)
    if net is None:
        return
    res.net_class_id = _int(net, "classID", where, 0, UINT32_MAX)
    for i, entry in enumerate(_list(net, "priorities", where)):
        f = f"{where}.priorities[{i}]"
        if not isinstance(entry, dict):
            raise CgroupError("must be an object", field=f)
        name = _str(entry, "name", f)
        prio = _int(entry, "priority", f, 0, UINT32_MAX)
        if not name or prio is None or any(c.isspace() for c in name):
            raise CgroupError("needs an interface 'name' and a 'priority'", field=f)
        res.net_priorities.append((name, prio))


def _parse_rdma(res: Resources, resources: dict[str, Any]) -> None:
    rdma = _obj(resources, "rdma", R)
    for name, entry in (rdma or {}).items():
        f = f"{R}.rdma.{name}"
        if not isinstance(entry, dict):
            raise CgroupError("must be an object", field=f)
        res.rdma.append(
            (
                name,
                _int(entry, "hcaHandles", f, 0, UINT32_MAX),
                _int(entry, "hcaObjects", f, 0, UINT32_MAX),
                f,
            )
        )


def rdma_line(name: str, handles: int | None, objects: int | None) -> str:
    parts = [name]
    if handles is not None:
        parts.append(f"hca_handle={handles}")
    if objects is not None:
        parts.append(f"hca_object={objects}")
    return " ".join(parts)


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] → cpu.weight [1, 10000], linearly (runc 1.1's formula)."""
    if shares == 0:
        return 0
    shares = max(shares, 2)
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] → io.weight [1, 10000], linearly (runc's formula)."""
    if weight == 0:
        return 0
    weight = max(weight, 10)
    return 1 + (weight - 10) * 9999 // 990


def swap_to_v2(swap: int | None, limit: int | None) -> int | None:
    """OCI's swap is memory+swap; v2's memory.swap.max is swap alone. -1 = max, None = unset."""
    swap = swap or 0
    limit = limit or 0
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap if swap else None
    field = f"{R}.memory.swap"
    if limit == 0 or limit == -1:
        raise CgroupError("cannot set a swap limit without a memory limit", field=field)
    if swap < limit:
        raise CgroupError(
            f"memory+swap limit {swap} must be >= the memory limit {limit}", field=field
        )
    return swap - limit
