"""The five capability sets of `process.capabilities`, parsed and applied exactly.

The container's init calls, in this order (see docs/security.md):

1. `drop_bounding(sets)` while still privileged (needs CAP_SETPCAP), before setuid;
2. `keep_for_setuid()` so that the permitted set survives the setuid/setgid that follows;
3. setgroups/setgid/setuid (another module);
4. `apply(sets)`: capset(effective, permitted, inheritable), then the ambient set.

Names follow runc 1.1: a name this kernel or this table does not know is ignored with a
warning (runc: "ignoring unknown or unavailable capabilities"), so a config written for a
newer kernel still runs. A spec without `capabilities` gives a process with none at all.
"""

from __future__ import annotations

import errno

from lowrun import log, syscalls
from lowrun.errors import ConfigError, SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

# linux/capability.h, in kernel order. The kernel in use may know fewer (cap_last_cap).
_ALL_NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

SET_NAMES = ("bounding", "effective", "inheritable", "permitted", "ambient")


def _read_last_cap(path: str = "/proc/sys/kernel/cap_last_cap") -> int:
    """The highest capability number of the running kernel (the table's last if unreadable)."""
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return len(_ALL_NAMES) - 1


LAST_CAP: int = _read_last_cap()

NAMES: dict[str, int] = {
    name: number for number, name in enumerate(_ALL_NAMES) if number <= LAST_CAP
}
"""Capability name -> number, for the capabilities the running kernel knows."""

BY_NUMBER: dict[int, str] = {number: name for name, number in NAMES.items()}


class CapabilitySets:
    """The five sets as capability numbers; `unknown` lists the names that were ignored.

    A plain class rather than a dataclass: `import dataclasses` costs lowrun ~6 ms.
    """

    __slots__ = ("ambient", "bounding", "effective", "inheritable", "permitted", "unknown")
    SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

    def __init__(
        self,
        bounding: frozenset[int] = frozenset(),
        effective: frozenset[int] = frozenset(),
        inheritable: frozenset[int] = frozenset(),
        permitted: frozenset[int] = frozenset(),
        ambient: frozenset[int] = frozenset(),
        unknown: tuple[str, ...] = (),
    ) -> None:
        self.bounding = bounding
        self.effective = effective
        self.inheritable = inheritable
        self.permitted = permitted
        self.ambient = ambient
        self.unknown = unknown

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CapabilitySets) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        sets = ", ".join(f"{name}={self.names(name)}" for name in self.SETS)
        return f"CapabilitySets({sets})"

    def names(self, which: str) -> list[str]:
        """The names of one set, sorted by number (for logs, tests and `lowrun spec`)."""
        numbers: frozenset[int] = getattr(self, which)
        return [BY_NUMBER.get(n, f"cap_{n}") for n in sorted(numbers)]


def mask(numbers: Iterable[int]) -> int:
    """Capability numbers -> the 64-bit mask the kernel uses."""
    result = 0
    for n in numbers:
        result |= 1 << n
    return result


def numbers_of(bits: int) -> frozenset[int]:
    """A 64-bit kernel mask -> capability numbers."""
    return frozenset(n for n in range(64) if bits >> n & 1)


def _parse_set(value: Any, where: str, unknown: list[str]) -> frozenset[int]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        kind = type(value).__name__
        raise ConfigError(where, f"must be an array of capability names, not {kind}")
    numbers: set[int] = set()
    for i, name in enumerate(value):
        if not isinstance(name, str):
            raise ConfigError(f"{where}[{i}]", f"must be a capability name string, not {name!r}")
        number = NAMES.get(name)
        if number is None:
            if name not in unknown:
                unknown.append(name)
            continue
        numbers.add(number)
    return frozenset(numbers)


def parse(spec: Mapping[str, Any] | None, where: str = "$.process.capabilities") -> CapabilitySets:
    """Parse `process.capabilities`; a missing spec or set means an empty set.

    Unknown or unavailable names are skipped with a warning, as runc 1.1 does. An effective
    capability outside the permitted set is an error: the kernel would refuse it at capset,
    after the container was half built.
    """
    if spec is None:
        return CapabilitySets()
    if not isinstance(spec, dict):
        raise ConfigError(where, f"must be an object, not {type(spec).__name__}")
    for key in spec:
        if key not in SET_NAMES:
            log.warning("%s.%s: not a capability set, ignored", where, key)
    unknown: list[str] = []
    parsed = {s: _parse_set(spec.get(s), f"{where}.{s}", unknown) for s in SET_NAMES}
    stray = parsed["effective"] - parsed["permitted"]
    if stray:
        names = ", ".join(BY_NUMBER[n] for n in sorted(stray))
        raise ConfigError(f"{where}.effective", f"{names} not in the permitted set")
    if unknown:
        log.warning("ignoring unknown or unavailable capabilities: %s", ", ".join(unknown))
    return CapabilitySets(**parsed, unknown=tuple(unknown))


def drop_bounding(sets: CapabilitySets, last_cap: int | None = None) -> None:
    """Drop every capability outside `sets.bounding` from the bounding set.

    Needs CAP_SETPCAP, so it runs while the init is still privileged, before setuid.
    Capabilities the kernel knows but this table does not name are dropped too.
    """
    top = LAST_CAP if last_cap is None else last_cap
    for number in range(top + 1):
        if number in sets.bounding:
            continue
        if syscalls.prctl(syscalls.PR_CAPBSET_READ, number) == 0:
            continue
        syscalls.prctl(syscalls.PR_CAPBSET_DROP, number)


def keep_for_setuid() -> None:
    """Keep the permitted set across the setuid from root that follows (PR_SET_KEEPCAPS).

    Without it, a change of all uids from 0 to non-zero clears every capability set.
    `apply` turns it off again; execve clears it in any case.
    """
    syscalls.set_keepcaps(True)


def apply(sets: CapabilitySets) -> None:
    """Set effective, permitted and inheritable, then replace the ambient set.

    Runs after setuid. The ambient set is cleared and then raised one by one; like runc 1.1,
    an ambient capability the kernel refuses (it must be both permitted and inheritable)
    is skipped with a warning rather than failing the container.
    """
    try:
        syscalls.capset(mask(sets.effective), mask(sets.permitted), mask(sets.inheritable))
    except SyscallError as e:
        if e.errno != errno.EPERM:
            raise
        raise SyscallError(
            e.errno,
            "capset",
            "the kernel refused the sets: inheritable capabilities must be in the bounding"
            " set, and permitted ones held by the init",
        ) from e
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    for number in sorted(sets.ambient):
        try:
            syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, number)
        except SyscallError as e:
            if e.errno != errno.EPERM:
                raise
            # Silent by default, as in runc 1.1: runc's own default spec asks for ambient
            # capabilities that are not inheritable, so this would warn on every run.
            log.debug(
                "ambient capability %s not raised: it must be permitted and inheritable",
                BY_NUMBER.get(number, number),
            )
    syscalls.set_keepcaps(False)


def current() -> CapabilitySets:
    """The calling thread's sets as the kernel reports them (bounding and ambient by prctl)."""
    effective, permitted, inheritable = syscalls.capget()
    bounding = frozenset(
        n for n in range(LAST_CAP + 1) if syscalls.prctl(syscalls.PR_CAPBSET_READ, n) == 1
    )
    ambient = frozenset(
        n
        for n in range(LAST_CAP + 1)
        if syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_IS_SET, n) == 1
    )
    return CapabilitySets(
        bounding=bounding,
        effective=numbers_of(effective),
        inheritable=numbers_of(inheritable),
        permitted=numbers_of(permitted),
        ambient=ambient,
    )
