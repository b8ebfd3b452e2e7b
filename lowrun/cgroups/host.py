"""What the host mounts, and where a container's cgroups go: runc's detection and path rules.

Detection (runc's `IsCgroup2UnifiedMode`/`IsCgroup2HybridMode`): the root itself a
cgroup2 mount → v2; otherwise v1, "hybrid" when `<root>/unified` is a cgroup2 mount.
The mounts come from /proc/self/mountinfo and the runtime's own cgroups from
/proc/self/cgroup; tests hand in the text of both, and a fake filesystem.
"""

from __future__ import annotations

import os
import posixpath

from lowrun.cgroups import DEFAULT_ROOT, CgroupError
from lowrun.cgroups.fs import CgroupFs

PATH_FIELD = "$.linux.cgroupsPath"
UNIFIED = "unified"  # key of the cgroup2 hierarchy that a hybrid v1 host also mounts


class Hierarchy:
    """One mounted hierarchy: where it is mounted and where this process sits in it."""

    __slots__ = ("controllers", "mount_root", "mountpoint", "own_path")

    def __init__(
        self, mountpoint: str, controllers: tuple[str, ...], mount_root: str, own_path: str
    ) -> None:
        self.mountpoint = mountpoint
        self.controllers = controllers
        self.mount_root = mount_root
        self.own_path = own_path

    def own_dir(self) -> str:
        """The directory of this process's own cgroup (runc's GetOwnCgroupPath)."""
        rel = posixpath.relpath(self.own_path, self.mount_root)
        if rel.startswith(".."):
            # Our cgroup is outside what this mount shows (a cgroup namespace): use its root.
            rel = "."
        return posixpath.normpath(posixpath.join(self.mountpoint, rel))

    def __repr__(self) -> str:
        return f"Hierarchy({self.mountpoint!r}, {self.controllers!r}, own={self.own_path!r})"


class CgroupHost:
    """The host's cgroup layout: mode, root, hierarchies by subsystem name, and the fs."""

    def __init__(
        self,
        mode: str,
        root: str,
        hierarchies: dict[str, Hierarchy],
        fs: CgroupFs | None = None,
    ) -> None:
        if mode not in ("v1", "v2"):
            raise ValueError(f"mode must be 'v1' or 'v2', not {mode!r}")
        self.mode = mode
        self.root = root
        self.hierarchies = hierarchies
        self.fs = fs if fs is not None else CgroupFs()

    @property
    def hybrid(self) -> bool:
        return self.mode == "v1" and UNIFIED in self.hierarchies


def real_fs() -> CgroupFs:
    return CgroupFs()


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(mountpoint, mount root, fstype, controllers) of every cgroup/cgroup2 mount."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rest = right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        fstype = rest[0]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        controllers: tuple[str, ...] = ()
        if fstype == "cgroup":
            known = ("rw", "ro", "noprefix", "clone_children", "cpuset_v2_mode", "xattr")
            controllers = tuple(
                opt
                for opt in rest[2].split(",")
                if opt not in known and not opt.startswith("release_agent=")
            )
        mounts.append((_unescape(fields[4]), _unescape(fields[3]), fstype, controllers))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/PID/cgroup as {subsystem: path}; the cgroup2 line ("0::/x") has key ""."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, names, path = parts
        if names == "":
            result[""] = path
        else:
            for name in names.split(","):
                result[name] = path
    return result


def build_host(
    root: str, mountinfo: str, self_cgroup: str, fs: CgroupFs | None = None
) -> CgroupHost:
    """The layout below `root` from the text of /proc/self/mountinfo and /proc/self/cgroup."""
    root = posixpath.normpath(root)
    own = parse_proc_cgroup(self_cgroup)
    hierarchies: dict[str, Hierarchy] = {}
    mode = "v1"
    for mountpoint, mount_root, fstype, controllers in parse_mountinfo(mountinfo):
        mountpoint = posixpath.normpath(mountpoint)
        if fstype == "cgroup2":
            if mountpoint == root:
                mode = "v2"
                hierarchies = {"": Hierarchy(mountpoint, (), mount_root, own.get("", "/"))}
                break
            if mountpoint == posixpath.join(root, UNIFIED):
                hierarchies[UNIFIED] = Hierarchy(mountpoint, (), mount_root, own.get("", "/"))
            continue
        if posixpath.dirname(mountpoint) != root:
            continue
        for name in controllers:
            if name not in hierarchies:
                hierarchies[name] = Hierarchy(
                    mountpoint, controllers, mount_root, own.get(name, "/")
                )
    if mode == "v1" and not any(k != UNIFIED for k in hierarchies):
        raise CgroupError(f"no cgroup hierarchy is mounted at {root}", path=root)
    return CgroupHost(mode, root, hierarchies, fs)


def detect_host(root: str = DEFAULT_ROOT) -> CgroupHost:
    """Read this process's mounts and cgroups from /proc."""
    try:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
        with open("/proc/self/cgroup") as f:
            self_cgroup = f.read()
    except OSError as e:
        raise CgroupError(f"cannot read /proc/self: {e}", errno=e.errno) from e
    return build_host(root, mountinfo, self_cgroup)


def is_systemd_style(cgroups_path: str) -> bool:
    """`slice:prefix:name`, runc's systemd driver syntax (no slash, exactly two colons)."""
    return "/" not in cgroups_path and cgroups_path.count(":") == 2


def clean_path(path: str) -> str:
    """runc's CleanPath: lexical clean; a relative path cannot climb above its start."""
    if path == "":
        return ""
    path = posixpath.normpath(path)
    if not path.startswith("/"):
        path = posixpath.relpath(posixpath.normpath("/" + path), "/")
    return posixpath.normpath(path)


def inner_path(container_id: str, cgroups_path: str | None) -> str:
    """The path below a hierarchy's root (absolute) or own cgroup (relative)."""
    if cgroups_path and is_systemd_style(cgroups_path):
        raise CgroupError(
            f"{cgroups_path!r} is a systemd-style path (slice:prefix:name); lowrun has no "
            "systemd cgroup driver: use a path such as /berth/<id> instead",
            field=PATH_FIELD,
        )
    inner = clean_path(cgroups_path or "") or clean_path(container_id)
    if inner in ("", ".", "/"):
        raise CgroupError(
            f"{cgroups_path!r} names the root cgroup itself; a container needs a cgroup of its own",
            field=PATH_FIELD,
        )
    return inner


def v1_path(h: Hierarchy, inner: str) -> str:
    if inner.startswith("/"):
        return posixpath.normpath(h.mountpoint + inner)
    return posixpath.normpath(posixpath.join(h.own_dir(), inner))


def v2_path(h: Hierarchy, inner: str) -> str:
    """fs2's rule: relative paths go below the *parent* of our own cgroup (no-internal-process)."""
    if inner.startswith("/"):
        return posixpath.normpath(h.mountpoint + inner)
    own = h.own_dir()
    parent = posixpath.dirname(own) if own != h.mountpoint else own
    return posixpath.normpath(posixpath.join(parent, inner))


def check_below(path: str, root: str) -> str:
    """Refuse a state file whose paths point outside the cgroup root."""
    norm = os.path.normpath(path)
    if norm == root or not norm.startswith(root.rstrip("/") + "/"):
        raise CgroupError(f"cgroup path {path!r} in the container's state is not below {root}")
    return norm
