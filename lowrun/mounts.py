"""Mount entries of config.json: option parsing, mountinfo parsing, the cgroup v1 plan.

Pure functions only (no system calls), so that the rules are unit-tested without root:
- `parse_options` turns the `options` list of a mount into mount(2) flags, propagation
  changes, recursive attributes (mount_setattr) and the data string, as runc does:
  every option it does not know goes, in order, to the data string.
- `parse_mount` checks one `$.mounts[i]` entry and says what kind of mount it is.
- `parse_mountinfo` and `cgroup_v1_plan` decide what a `cgroup` mount contains on a
  v1 (or hybrid) host.
"""

from __future__ import annotations

import os

from lowrun import syscalls as sc
from lowrun.cgroups.host import parse_proc_cgroup
from lowrun.errors import ConfigError, SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Self


class Record:
    """A small immutable-by-convention record: slots, equality, repr and `_replace`.

    Used instead of NamedTuple because the init imports this module on every start and
    each NamedTuple class costs a fraction of a millisecond to build.
    """

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def _replace(self, **changes: Any) -> Self:
        new = object.__new__(type(self))
        for name in self.__slots__:
            object.__setattr__(new, name, changes.pop(name, getattr(self, name)))
        if changes:
            raise TypeError(f"unknown fields {sorted(changes)}")
        return new

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"


# option -> (clear?, flag), as mount(8) and runc understand them.
FLAGS: dict[str, tuple[bool, int]] = {
    "acl": (False, sc.MS_POSIXACL),
    "async": (True, sc.MS_SYNCHRONOUS),
    "atime": (True, sc.MS_NOATIME),
    "bind": (False, sc.MS_BIND),
    "defaults": (False, 0),
    "dev": (True, sc.MS_NODEV),
    "diratime": (True, sc.MS_NODIRATIME),
    "dirsync": (False, sc.MS_DIRSYNC),
    "exec": (True, sc.MS_NOEXEC),
    "lazytime": (False, sc.MS_LAZYTIME),
    "loud": (True, sc.MS_SILENT),
    "mand": (False, sc.MS_MANDLOCK),
    "noacl": (True, sc.MS_POSIXACL),
    "noatime": (False, sc.MS_NOATIME),
    "nodev": (False, sc.MS_NODEV),
    "nodiratime": (False, sc.MS_NODIRATIME),
    "noexec": (False, sc.MS_NOEXEC),
    "nolazytime": (True, sc.MS_LAZYTIME),
    "nomand": (True, sc.MS_MANDLOCK),
    "norelatime": (True, sc.MS_RELATIME),
    "nostrictatime": (True, sc.MS_STRICTATIME),
    "nosuid": (False, sc.MS_NOSUID),
    "nosymfollow": (False, sc.MS_NOSYMFOLLOW),
    "rbind": (False, sc.MS_BIND | sc.MS_REC),
    "relatime": (False, sc.MS_RELATIME),
    "remount": (False, sc.MS_REMOUNT),
    "ro": (False, sc.MS_RDONLY),
    "rw": (True, sc.MS_RDONLY),
    "silent": (False, sc.MS_SILENT),
    "strictatime": (False, sc.MS_STRICTATIME),
    "suid": (True, sc.MS_NOSUID),
    "symfollow": (True, sc.MS_NOSYMFOLLOW),
    "sync": (False, sc.MS_SYNCHRONOUS),
}

PROPAGATION: dict[str, int] = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED,
    "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE,
    "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}

# Recursive attributes, applied with mount_setattr(AT_RECURSIVE): option -> (clear?, attr).
RECURSIVE: dict[str, tuple[bool, int]] = {
    "rro": (False, sc.MOUNT_ATTR_RDONLY),
    "rrw": (True, sc.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, sc.MOUNT_ATTR_NOSUID),
    "rsuid": (True, sc.MOUNT_ATTR_NOSUID),
    "rnodev": (False, sc.MOUNT_ATTR_NODEV),
    "rdev": (True, sc.MOUNT_ATTR_NODEV),
    "rnoexec": (False, sc.MOUNT_ATTR_NOEXEC),
    "rexec": (True, sc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, sc.MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, sc.MOUNT_ATTR_NODIRATIME),
    "rrelatime": (False, sc.MOUNT_ATTR_RELATIME),
    "rnorelatime": (True, sc.MOUNT_ATTR_RELATIME),
    "rnoatime": (False, sc.MOUNT_ATTR_NOATIME),
    "ratime": (True, sc.MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, sc.MOUNT_ATTR_STRICTATIME),
    "rnostrictatime": (True, sc.MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, sc.MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, sc.MOUNT_ATTR_NOSYMFOLLOW),
}
_ATIME_ATTRS = {"rrelatime", "rnoatime", "rstrictatime"}

# Options runc knows but lowrun refuses rather than passing them to the kernel as data.
UNSUPPORTED = {"tmpcopyup": "tmpcopyup is not supported by lowrun"}

# Flags that change a mount's behaviour once it exists (a bind must be remounted for them).
REMOUNT_FLAGS = (
    sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_NOATIME
    | sc.MS_NODIRATIME | sc.MS_RELATIME | sc.MS_STRICTATIME | sc.MS_NOSYMFOLLOW
)


class MountOptions(Record):
    """What a mount's `options` mean.

    flags: mount(2) flags, MS_BIND/MS_REC included for bind and rbind;
    propagation: changes applied one by one after the mount, in the order given;
    attr_set, attr_clr: recursive attributes (MOUNT_ATTR_*) for mount_setattr(AT_RECURSIVE);
    data: every option not recognised, comma-joined: the filesystem's own options.
    """

    __slots__ = ("attr_clr", "attr_set", "data", "flags", "propagation")

    def __init__(
        self, flags: int, propagation: tuple[int, ...], attr_set: int, attr_clr: int, data: str
    ) -> None:
        self.flags = flags
        self.propagation = propagation
        self.attr_set = attr_set
        self.attr_clr = attr_clr
        self.data = data

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & sc.MS_BIND)

    @property
    def recursive_bind(self) -> bool:
        return bool(self.flags & sc.MS_BIND and self.flags & sc.MS_REC)


def parse_options(options: list[str] | None, where: str = "$.options") -> MountOptions:
    """Split a mount's options into flags, propagation, recursive attributes and data.

    Later options win over earlier ones (`ro,rw` is read-write), as with mount(8).
    """
    flags = 0
    propagation: list[int] = []
    attr_set = attr_clr = 0
    data: list[str] = []
    for i, option in enumerate(options or []):
        if not isinstance(option, str):
            raise ConfigError(f"{where}[{i}]", f"option must be a string, not {option!r}")
        if option in FLAGS:
            clear, flag = FLAGS[option]
            flags = flags & ~flag if clear else flags | flag
        elif option in PROPAGATION:
            propagation.append(PROPAGATION[option])
        elif option in RECURSIVE:
            clear, attr = RECURSIVE[option]
            if clear:
                attr_clr |= attr
                attr_set &= ~attr
            else:
                attr_set |= attr
                attr_clr &= ~attr
            if option in _ATIME_ATTRS:
                attr_clr |= sc.MOUNT_ATTR__ATIME
        elif option in UNSUPPORTED:
            raise ConfigError(f"{where}[{i}]", UNSUPPORTED[option])
        else:
            data.append(option)
    return MountOptions(flags, tuple(propagation), attr_set, attr_clr, ",".join(data))


def propagation_flags(value: str, where: str = "$.linux.rootfsPropagation") -> int:
    """The mount(2) flags for `linux.rootfsPropagation` (shared, rslave, ...)."""
    try:
        return PROPAGATION[value]
    except KeyError:
        names = ", ".join(sorted(PROPAGATION))
        raise ConfigError(where, f"unknown propagation {value!r} (one of {names})") from None


def clean_path(path: str) -> str:
    """A container path made absolute and lexically clean ("a/../b/" -> "/b")."""
    return os.path.normpath("/" + path).replace("//", "/")


class MountSpec(Record):
    """One checked `$.mounts[number]` entry.

    destination: as written, made absolute and clean (symlinks are not resolved);
    kind: "bind", "proc", "sysfs", "tmpfs", "cgroup", "cgroup2", "mqueue", "devpts"...;
    source: for binds the absolute host path (relative ones are taken from the bundle).
    """

    __slots__ = ("destination", "fstype", "kind", "number", "options", "source")

    def __init__(
        self, number: int, destination: str, kind: str, fstype: str, source: str,
        options: MountOptions,
    ) -> None:
        self.number = number
        self.destination = destination
        self.kind = kind
        self.fstype = fstype
        self.source = source
        self.options = options

    @property
    def where(self) -> str:
        return f"$.mounts[{self.number}]"

    def label(self) -> str:
        """How errors name this mount: `$.mounts[3] (/data)`."""
        return f"{self.where} ({self.destination})"


def parse_mount(entry: Any, index: int, bundle: str) -> MountSpec:
    """Check `$.mounts[index]` and classify it; a bind's relative source is bundle-relative."""
    where = f"$.mounts[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(where, "a mount must be an object")
    destination = entry.get("destination")
    if not isinstance(destination, str) or not destination:
        raise ConfigError(f"{where}.destination", "required, a non-empty path")
    if "\0" in destination:
        raise ConfigError(f"{where}.destination", "contains a NUL byte")
    options = parse_options(entry.get("options"), f"{where}.options")
    fstype = entry.get("type") or ""
    if not isinstance(fstype, str):
        raise ConfigError(f"{where}.type", "must be a string")
    source = entry.get("source") or ""
    if not isinstance(source, str):
        raise ConfigError(f"{where}.source", "must be a string")
    if options.is_bind or fstype == "bind":
        if not source:
            raise ConfigError(f"{where}.source", "a bind mount needs a source")
        if not options.is_bind:
            options = options._replace(flags=options.flags | sc.MS_BIND)
        kind = "bind"
        source = os.path.normpath(os.path.join(bundle, source))
    elif not fstype:
        raise ConfigError(f"{where}.type", "required unless the options contain bind or rbind")
    else:
        kind = fstype
        source = source or fstype
    return MountSpec(index, clean_path(destination), kind, fstype, source, options)


class MountInfo(Record):
    """One line of mountinfo; `optional` holds shared:N, master:N, unbindable..."""

    __slots__ = (
        "fstype",
        "mount_id",
        "mountpoint",
        "optional",
        "parent_id",
        "root",
        "source",
        "super_options",
    )

    def __init__(
        self, mount_id: int, parent_id: int, root: str, mountpoint: str,
        optional: tuple[str, ...], fstype: str, source: str, super_options: tuple[str, ...],
    ) -> None:
        self.mount_id = mount_id
        self.parent_id = parent_id
        self.root = root
        self.mountpoint = mountpoint
        self.optional = optional
        self.fstype = fstype
        self.source = source
        self.super_options = super_options


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountInfo]:
    """Parse /proc/PID/mountinfo (proc(5)) into entries, in mount order."""
    result = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        sep = fields.index("-")
        result.append(
            MountInfo(
                mount_id=int(fields[0]),
                parent_id=int(fields[1]),
                root=_unescape(fields[3]),
                mountpoint=_unescape(fields[4]),
                optional=tuple(fields[6:sep]),
                fstype=fields[sep + 1],
                source=_unescape(fields[sep + 2]),
                super_options=tuple(fields[sep + 3].split(",")) if len(fields) > sep + 3 else (),
            )
        )
    return result


def mount_containing(mounts: list[MountInfo], path: str) -> MountInfo:
    """The mount on which `path` (absolute, symlink-free) lives: the last, longest match."""
    best: MountInfo | None = None
    for m in mounts:
        mp = m.mountpoint
        inside = path == mp or mp == "/" or path.startswith(mp.rstrip("/") + "/")
        if inside and (best is None or len(mp) >= len(best.mountpoint)):
            best = m
    if best is None:
        raise SyscallError(2, "mountinfo", f"no mount holds {path}")
    return best


V1_CONTROLLERS = frozenset(
    {
        "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory",
        "net_cls", "net_prio", "perf_event", "pids", "rdma", "misc",
    }
)


def v1_subsystems(m: MountInfo) -> tuple[str, ...]:
    """The controllers (and `name=` of named hierarchies) a v1 cgroup mount carries."""
    return tuple(
        o for o in m.super_options if o in V1_CONTROLLERS or o.startswith("name=")
    )


class CgroupMount(Record):
    """One hierarchy to make visible under the container's cgroup mount.

    name: directory under the destination, the host mountpoint's base name (cpu,cpuacct);
    source: the host directory to bind (no cgroup namespace);
    data: mount data for a fresh cgroup mount (cgroup namespace): the subsystems.
    """

    __slots__ = ("data", "name", "source")

    def __init__(self, name: str, source: str, data: str) -> None:
        self.name = name
        self.source = source
        self.data = data


def cgroup_v1_plan(mounts: list[MountInfo], proc_cgroup: str) -> list[CgroupMount]:
    """What runc puts under a v1 `cgroup` mount: one entry per v1 hierarchy the host mounts.

    The bind source is the process's own cgroup in that hierarchy, found from
    /proc/self/cgroup relative to the root of the host's mount of it.
    """
    paths = parse_proc_cgroup(proc_cgroup)
    plan: list[CgroupMount] = []
    seen: set[str] = set()
    for m in mounts:
        if m.fstype != "cgroup":
            continue
        subsystems = v1_subsystems(m)
        name = os.path.basename(m.mountpoint.rstrip("/"))
        if not subsystems or name in seen:
            continue
        seen.add(name)
        own = next((paths[s] for s in subsystems if s in paths), None)
        if own is None:
            continue
        rel = os.path.relpath(own, m.root)
        source = m.mountpoint if rel == "." else os.path.join(m.mountpoint, rel)
        plan.append(CgroupMount(name, os.path.normpath(source), ",".join(subsystems)))
    return plan


def comount_links(plan: list[CgroupMount]) -> list[tuple[str, str]]:
    """(link name, target) for co-mounted hierarchies: cpu -> cpu,cpuacct and cpuacct -> ..."""
    links: list[tuple[str, str]] = []
    for entry in plan:
        if "," in entry.name:
            links.extend((part, entry.name) for part in entry.name.split(",") if part)
    return links


class MountError(SyscallError):
    """A system call failed while building one mount, device or path of the rootfs.

    Keeps the errno and the call like any `SyscallError`, and names the config entry:
    `$.mounts[3] (/data): mount: No such file or directory`.
    """

    def __init__(self, err: int, call: str, label: str, what: str = "") -> None:
        super().__init__(err, call, what)
        self.label = label

    def __str__(self) -> str:
        return f"{self.label}: {self.call}: {os.strerror(self.errno or 0)}"
