"""The container's root filesystem, built by its init in its own mount namespace.

Three steps, called in this order by the init (see lowrun/container/init.py):
- `prepare`: make / a slave (or `linux.rootfsPropagation`), bind the rootfs onto
  itself, mount every `$.mounts[i]` in order, create /dev's nodes and symlinks;
- `enter`: pivot_root into it (or MS_MOVE + chroot with `--no-pivot`);
- `finish`: /dev and / read-only if asked, sysctls, readonlyPaths, maskedPaths, and
  the final root propagation.

Every destination is resolved inside the rootfs (lowrun.safepath) and mounted by fd:
a symlink in the bundle can neither redirect a mount onto the host nor make the
runtime create files outside the rootfs. proc and sysfs go only on real directories,
and nothing but proc (and a few files lxcfs emulates) may be mounted inside /proc.
"""

from __future__ import annotations

import errno
import os
import stat

from lowrun import devices as devs
from lowrun import mounts, safepath
from lowrun import syscalls as sc
from lowrun.cgroups.host import parse_proc_cgroup
from lowrun.errors import ConfigError, SyscallError, suppress
from lowrun.mounts import MountError, MountSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_TMPFS_FLAGS = sc.MS_NOEXEC | sc.MS_NOSUID | sc.MS_NODEV

PROC_FILES_ALLOWED = frozenset(
    {
        "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
        "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
        "/proc/sys/kernel/ns_last_pid",
    }
)
"""Files under /proc that may be bind-mounted over (what lxcfs emulates), as runc allows."""

DEV_SYMLINKS = (
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
)

_ST_TO_MS = (
    (os.ST_RDONLY, sc.MS_RDONLY),
    (os.ST_NOSUID, sc.MS_NOSUID),
    (os.ST_NODEV, sc.MS_NODEV),
    (os.ST_NOEXEC, sc.MS_NOEXEC),
    (os.ST_SYNCHRONOUS, sc.MS_SYNCHRONOUS),
    (os.ST_MANDLOCK, sc.MS_MANDLOCK),
    (os.ST_NOATIME, sc.MS_NOATIME),
    (os.ST_NODIRATIME, sc.MS_NODIRATIME),
    (os.ST_RELATIME, sc.MS_RELATIME),
)

_NAMESPACED_SYSCTLS = {
    "kernel.msgmax": "ipc", "kernel.msgmnb": "ipc", "kernel.msgmni": "ipc",
    "kernel.sem": "ipc", "kernel.shmall": "ipc", "kernel.shmmax": "ipc",
    "kernel.shmmni": "ipc", "kernel.shm_rmid_forced": "ipc",
    "kernel.hostname": "uts", "kernel.domainname": "uts",
}


# ---------------------------------------------------------------- prepare


def prepare(
    config: dict[str, Any],
    bundle: str,
    rootfs: str,
    *,
    console: str | None = None,
    join_cgroup: Callable[[], None] | None = None,
) -> None:
    """Build the rootfs in the current (new) mount namespace, before pivot_root.

    The whole config is checked first, so that a bad entry fails before anything is
    mounted. `console`, the path of a pty slave, is bound on /dev/console.
    `join_cgroup` is called once, before the first cgroup filesystem is mounted (or at
    the end): until then the caller may still be on its way into its cgroup, whose
    placement the cgroup mounts must see.
    """
    root = os.path.realpath(os.path.join(bundle, rootfs))
    specs = [mounts.parse_mount(e, i, bundle) for i, e in enumerate(config.get("mounts") or [])]
    devices = devs.devices_for(config)
    _check_path_lists(config)
    sysctl_paths(config)
    linux = config.get("linux") or {}
    propagation = sc.MS_SLAVE | sc.MS_REC
    if linux.get("rootfsPropagation"):
        propagation = mounts.propagation_flags(linux["rootfsPropagation"])
    if not os.path.isdir(root):
        raise ConfigError("$.root.path", f"{root} is not a directory")

    sc.mount(None, "/", None, propagation)
    _make_parent_private(root)
    sc.mount(root, root, None, sc.MS_BIND | sc.MS_REC)
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        cgroupns = any(ns.get("type") == "cgroup" for ns in linux.get("namespaces") or [])
        for spec in specs:
            if join_cgroup is not None and spec.kind in ("cgroup", "cgroup2"):
                join_cgroup()
                join_cgroup = None
            _mount_entry(root, rootfd, spec, cgroupns)
        if not any(s.kind == "bind" and s.destination == "/dev" for s in specs):
            devs.create_devices(rootfd, devices)
            _labelled("/dev symlinks (/dev)", _dev_links, rootfd)
        if console:
            _labelled("console (/dev/console)", _bind_console, rootfd, console)
    finally:
        os.close(rootfd)
    if join_cgroup is not None:
        join_cgroup()


def _labelled(label: str, func: Any, *args: Any) -> None:
    """Run func(*args), turning a failed call into a MountError that names `label`."""
    try:
        func(*args)
    except (ConfigError, MountError):
        raise
    except OSError as exc:
        call = exc.call if isinstance(exc, SyscallError) else "open"
        what = exc.what if isinstance(exc, SyscallError) else str(exc.filename or "")
        raise MountError(exc.errno or errno.EIO, call, label, what) from None


def _mountinfo() -> list[mounts.MountInfo]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return mounts.parse_mountinfo(f.read())


def _make_parent_private(root: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared: make that one private."""
    parent = mounts.mount_containing(_mountinfo(), root)
    if any(o.startswith("shared:") for o in parent.optional):
        sc.mount(None, parent.mountpoint, None, sc.MS_PRIVATE)


def _resolve(rootfd: int, spec: MountSpec, kind: str, strict: bool = False) -> int:
    """An O_PATH fd of the destination, created as `kind` if missing.

    `strict` (proc, sysfs): no symlink anywhere on the path, and it must be a directory.
    """
    try:
        fd = safepath.ensure(rootfd, spec.destination, kind, no_symlinks=strict)
    except SyscallError as exc:
        if strict and exc.errno == errno.ELOOP:
            raise ConfigError(
                f"{spec.where}.destination",
                f"{spec.destination}: {spec.kind} must be mounted on a real directory, "
                "not through a symlink",
            ) from None
        raise
    if strict and not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(
            f"{spec.where}.destination",
            f"{spec.destination}: {spec.kind} must be mounted on a directory",
        )
    return fd


def _check_proc(root: str, fd: int, spec: MountSpec) -> None:
    """Only proc itself goes on /proc, and only lxcfs-style files inside it."""
    where = safepath.container_path(fd, root)
    if where == "/proc":
        if spec.kind == "proc":
            return
        if spec.kind == "bind" and _is_procfs(spec.source):
            return
        problem = "only a proc filesystem may be mounted on /proc"
    elif where.startswith("/proc/"):
        if where in PROC_FILES_ALLOWED:
            return
        problem = "mounts inside /proc are refused"
    else:
        return
    shown = spec.destination if where == spec.destination else f"{spec.destination} -> {where}"
    raise ConfigError(f"{spec.where}.destination", f"{shown}: {problem}")


def _is_procfs(path: str) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return sc.fs_type(fd) == sc.PROC_SUPER_MAGIC
    finally:
        os.close(fd)


def _mnt_flags(fd: int) -> int:
    """The MS_* flags a mount has now (from statfs), to keep them across a remount."""
    st_flags = os.fstatvfs(fd).f_flag
    return sum(ms for st, ms in _ST_TO_MS if st_flags & st)


def _remount(fd: int, flags: int) -> None:
    """Remount (MS_REMOUNT|MS_BIND) the mount at `fd`; on EPERM keep its locked flags.

    In a user namespace, flags the parent namespace set (nosuid, nodev, ...) are locked:
    a remount must repeat them.
    """
    target = sc.fd_path(fd)
    try:
        sc.mount(None, target, None, flags)
    except SyscallError as exc:
        if exc.errno != errno.EPERM:
            raise
        sc.mount(None, target, None, flags | _mnt_flags(fd))


def _mount_at(
    root: str, rootfd: int, fd: int, source: str | None, fstype: str | None, flags: int,
    data: str,
) -> int:
    """mount(2) onto the object `fd` refers to; return an O_PATH fd of the new mount.

    The fd is reopened by its resolved path, and the mount id checked: an fd taken
    before the mount refers to what is underneath, so remounts must use the new one.
    """
    before = safepath.mount_id(fd)
    path = safepath.container_path(fd, root)
    sc.mount(source, sc.fd_path(fd), fstype, flags, data or None)
    new = safepath.open_in_root(rootfd, path)
    if safepath.mount_id(new) == before:
        os.close(new)
        raise SyscallError(errno.EXDEV, "mount", f"{path}: the new mount is not where it was put")
    return new


def _finish_mount(fd: int, options: mounts.MountOptions) -> None:
    for flag in options.propagation:
        sc.mount(None, sc.fd_path(fd), None, flag)
    if options.attr_set or options.attr_clr:
        sc.mount_setattr(fd, options.attr_set, options.attr_clr)


def _mount_entry(root: str, rootfd: int, spec: MountSpec, cgroupns: bool) -> None:
    """Mount one `$.mounts[i]`; any failure names it: `$.mounts[3] (/data): mount: ...`."""
    if spec.kind == "bind":
        _labelled(spec.label(), _mount_bind, root, rootfd, spec)
    elif spec.kind == "cgroup":
        _labelled(spec.label(), _mount_cgroup, root, rootfd, spec, cgroupns)
    elif spec.kind == "cgroup2":
        _labelled(spec.label(), _mount_cgroup2, root, rootfd, spec, cgroupns)
    else:
        _labelled(spec.label(), _mount_fs, root, rootfd, spec)


def _mount_fs(root: str, rootfd: int, spec: MountSpec) -> None:
    """A filesystem instance: proc, sysfs, tmpfs, devpts, mqueue, or any other type."""
    strict = spec.kind in ("proc", "sysfs")
    fd = _resolve(rootfd, spec, "dir", strict=strict)
    try:
        _check_proc(root, fd, spec)
        flags = spec.options.flags
        if spec.destination == "/dev":
            flags &= ~sc.MS_RDONLY  # devices go in first; `finish` makes it read-only
        new = _mount_at(root, rootfd, fd, spec.source, spec.fstype, flags, spec.options.data)
    finally:
        os.close(fd)
    try:
        expected = {"proc": sc.PROC_SUPER_MAGIC, "sysfs": sc.SYSFS_MAGIC}.get(spec.kind)
        if expected is not None and sc.fs_type(new) != expected:
            raise SyscallError(errno.EXDEV, "mount", f"{spec.destination} is not {spec.kind}")
        _finish_mount(new, spec.options)
    finally:
        os.close(new)


def _mount_bind(root: str, rootfd: int, spec: MountSpec) -> None:
    """A bind (or rbind) of a host path; its flags need a second, remounting call."""
    try:
        is_dir = stat.S_ISDIR(os.stat(spec.source).st_mode)
    except FileNotFoundError:
        raise ConfigError(
            f"{spec.where}.source", f"{spec.source}: no such file or directory"
        ) from None
    fd = _resolve(rootfd, spec, "dir" if is_dir else "file")
    try:
        _check_proc(root, fd, spec)
        bind = spec.options.flags & (sc.MS_BIND | sc.MS_REC)
        new = _mount_at(root, rootfd, fd, spec.source, None, bind, "")
    finally:
        os.close(fd)
    try:
        extra = spec.options.flags & mounts.REMOUNT_FLAGS
        if extra:
            _remount(new, sc.MS_BIND | sc.MS_REMOUNT | extra)
        _finish_mount(new, spec.options)
    finally:
        os.close(new)


def _cgroup_v2_host() -> bool:
    fd = os.open(CGROUP_ROOT, os.O_PATH | os.O_CLOEXEC)
    try:
        return sc.fs_type(fd) == sc.CGROUP2_SUPER_MAGIC
    finally:
        os.close(fd)


def _sub_spec(spec: MountSpec, name: str, kind: str, source: str, flags: int) -> MountSpec:
    options = spec.options._replace(flags=flags, data="")
    dest = mounts.clean_path(spec.destination + "/" + name)
    return spec._replace(destination=dest, kind=kind, fstype=kind, source=source, options=options)


def _mount_cgroup(root: str, rootfd: int, spec: MountSpec, cgroupns: bool) -> None:
    """cgroup v1, as runc: a tmpfs with one directory per hierarchy the host mounts.

    In a cgroup namespace each hierarchy is mounted afresh (rooted at the namespace's
    cgroup); without one, the container's own cgroup directories are bound from the host.
    """
    if _cgroup_v2_host():
        _mount_cgroup2(root, rootfd, spec, cgroupns)
        return
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        plan = mounts.cgroup_v1_plan(_mountinfo(), f.read())
    flags = spec.options.flags & ~sc.MS_BIND & ~sc.MS_REC
    tmpfs = spec._replace(
        kind="tmpfs", fstype="tmpfs", source="tmpfs",
        options=spec.options._replace(flags=CGROUP_TMPFS_FLAGS, data="mode=755",
                                      attr_set=0, attr_clr=0),
    )
    _mount_fs(root, rootfd, tmpfs)
    for entry in plan:
        if cgroupns:
            sub = _sub_spec(spec, entry.name, "cgroup", "cgroup", flags)
            _mount_fs(root, rootfd, sub._replace(options=sub.options._replace(data=entry.data)))
        else:
            sub = _sub_spec(spec, entry.name, "bind", entry.source,
                            flags | sc.MS_BIND | sc.MS_REC)
            _mount_bind(root, rootfd, sub)
    top = safepath.open_in_root(rootfd, spec.destination)
    try:
        for link, target in mounts.comount_links(plan):
            with suppress(FileExistsError):
                os.symlink(target, link, dir_fd=top)
        if flags & sc.MS_RDONLY:
            _remount(top, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | CGROUP_TMPFS_FLAGS)
    finally:
        os.close(top)


def _mount_cgroup2(root: str, rootfd: int, spec: MountSpec, cgroupns: bool) -> None:
    """The unified hierarchy: mounted afresh, or (EPERM/EBUSY) our cgroup bound from the host."""
    flags = spec.options.flags & ~sc.MS_BIND & ~sc.MS_REC
    fresh = spec._replace(kind="cgroup2", fstype="cgroup2", source="cgroup2",
                          options=spec.options._replace(flags=flags))
    try:
        _mount_fs(root, rootfd, fresh)
        return
    except SyscallError as exc:
        if exc.errno not in (errno.EPERM, errno.EBUSY):
            raise
    unified = next((m for m in _mountinfo() if m.fstype == "cgroup2"), None)
    if unified is None:
        raise SyscallError(errno.ENOENT, "mount", "the host has no cgroup2 mount to bind")
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        own = parse_proc_cgroup(f.read()).get("", "/")
    rel = os.path.relpath(own, unified.root)
    source = os.path.normpath(os.path.join(unified.mountpoint, rel))
    _mount_bind(root, rootfd, fresh._replace(kind="bind", source=source, options=fresh.options
                                              ._replace(flags=flags | sc.MS_BIND | sc.MS_REC)))


def _dev_links(rootfd: int) -> None:
    """/dev/fd, stdin, stdout, stderr (and core when the kernel has /proc/kcore); ptmx."""
    dev = safepath.ensure(rootfd, "/dev", "dir")
    try:
        links = list(DEV_SYMLINKS)
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "core"))
        for target, name in links:
            with suppress(FileExistsError):
                os.symlink(target, name, dir_fd=dev)
        try:
            os.unlink("ptmx", dir_fd=dev)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            os.rmdir("ptmx", dir_fd=dev)
        os.symlink("pts/ptmx", "ptmx", dir_fd=dev)
    finally:
        os.close(dev)


def _bind_console(rootfd: int, console: str) -> None:
    fd = safepath.ensure(rootfd, "/dev/console", "file", 0o600)
    try:
        sc.mount(console, sc.fd_path(fd), None, sc.MS_BIND)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- enter


def enter(rootfs: str, *, no_pivot: bool = False) -> None:
    """Make the prepared rootfs the process's root, cwd "/".

    pivot_root(".", ".") stacks the old root on top of the new one, where it is made
    a slave (so that unmounting it does not propagate) and detached. With `no_pivot`
    the rootfs is moved onto / and chrooted into: weaker, the old root stays beneath.
    """
    root = os.path.realpath(rootfs)
    if no_pivot:
        os.chdir(root)
        sc.mount(root, "/", None, sc.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(root, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        sc.pivot_root(".", ".")
        os.fchdir(old)
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


# ---------------------------------------------------------------- finish


def finish(config: dict[str, Any]) -> None:
    """After `enter`: read-only /dev and /, sysctls, readonlyPaths, maskedPaths, propagation."""
    linux = config.get("linux") or {}
    rootfd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, entry in enumerate(config.get("mounts") or []):
            spec = mounts.parse_mount(entry, i, "/")
            if spec.destination == "/dev" and spec.kind != "bind" and (
                spec.options.flags & sc.MS_RDONLY
            ):
                _labelled(spec.label(), _remount_path, rootfd, "/dev", sc.MS_RDONLY)
        if (config.get("root") or {}).get("readonly"):
            _labelled("$.root.readonly (/)", _remount_path, rootfd, "/", sc.MS_RDONLY)
        for key, (path, value) in sysctl_paths(config).items():
            _labelled(f'$.linux.sysctl["{key}"] ({path})', _write_sysctl, path, value)
        for i, path in enumerate(linux.get("readonlyPaths") or []):
            _labelled(f"$.linux.readonlyPaths[{i}] ({path})", _readonly_path, rootfd, path)
        for i, path in enumerate(linux.get("maskedPaths") or []):
            _labelled(f"$.linux.maskedPaths[{i}] ({path})", _mask_path, rootfd, path)
        propagation = linux.get("rootfsPropagation")
        if propagation:
            flags = mounts.propagation_flags(propagation)
            if not flags & sc.MS_PRIVATE:
                sc.mount(None, "/", None, flags)
    finally:
        os.close(rootfd)


def _target(fd: int, path: str) -> str:
    """Mount by fd where /proc is mounted; inside the new root a plain path is the fallback."""
    return sc.fd_path(fd) if os.path.isdir("/proc/self/fd") else path


def _remount_path(rootfd: int, path: str, flags: int) -> None:
    """Remount a mount point adding `flags`, keeping the flags it has (as runc's setReadonly)."""
    fd = safepath.open_in_root(rootfd, path)
    try:
        target = _target(fd, path)
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | flags | _mnt_flags(fd))
    finally:
        os.close(fd)


def _open_existing(rootfd: int, path: str) -> int | None:
    """An O_PATH fd of `path` inside the root, or None if it does not exist there."""
    try:
        return safepath.open_in_root(rootfd, path)
    except SyscallError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def _readonly_path(rootfd: int, path: str) -> None:
    """Bind `path` onto itself and remount it read-only; a missing path is skipped."""
    fd = _open_existing(rootfd, path)
    if fd is None:
        return
    try:
        target = _target(fd, path)
        sc.mount(target, target, None, sc.MS_BIND | sc.MS_REC)
    finally:
        os.close(fd)
    fd = safepath.open_in_root(rootfd, path)
    try:
        flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC
        target = _target(fd, path)
        try:
            sc.mount(None, target, None, flags)
        except SyscallError as exc:
            if exc.errno != errno.EPERM:
                raise
            sc.mount(None, target, None, flags | _mnt_flags(fd))
    finally:
        os.close(fd)


def _mask_path(rootfd: int, path: str) -> None:
    """Hide `path`: /dev/null bound over a file, an empty read-only tmpfs over a directory."""
    fd = _open_existing(rootfd, path)
    if fd is None:
        return
    try:
        target = _target(fd, path)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            sc.mount("tmpfs", target, "tmpfs", sc.MS_RDONLY, None)
        else:
            sc.mount("/dev/null", target, None, sc.MS_BIND)
    finally:
        os.close(fd)


def _check_path_lists(config: dict[str, Any]) -> None:
    linux = config.get("linux") or {}
    for key in ("maskedPaths", "readonlyPaths"):
        for i, path in enumerate(linux.get(key) or []):
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigError(f"$.linux.{key}[{i}]", f"must be an absolute path, not {path!r}")


def sysctl_paths(config: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """`linux.sysctl` checked: {key: (path under /proc/sys, value)}.

    Only namespaced sysctls are accepted, and only with the namespace they belong to
    (ipc for kernel.msg*/sem/shm* and fs.mqueue.*, network for net.*, uts for
    kernel.hostname/domainname): anything else would change the host.
    """
    linux = config.get("linux") or {}
    sysctl = linux.get("sysctl") or {}
    if not isinstance(sysctl, dict):
        raise ConfigError("$.linux.sysctl", "must be an object")
    namespaces = {ns.get("type") for ns in linux.get("namespaces") or []}
    result: dict[str, tuple[str, str]] = {}
    for key, value in sysctl.items():
        where = f'$.linux.sysctl["{key}"]'
        if not isinstance(value, str):
            raise ConfigError(where, "the value must be a string")
        rel = key if "/" in key else key.replace(".", "/")
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ConfigError(where, f"{key!r} is not a sysctl name")
        dotted = ".".join(parts)
        needs = _NAMESPACED_SYSCTLS.get(dotted)
        if needs is None and dotted.startswith("fs.mqueue."):
            needs = "ipc"
        if needs is None and dotted.startswith("net."):
            needs = "network"
        if needs is None:
            raise ConfigError(where, f"{dotted} is not namespaced: refused")
        if needs not in namespaces:
            raise ConfigError(where, f"{dotted} needs the container's own {needs} namespace")
        result[key] = ("/proc/sys/" + "/".join(parts), value)
    return result


def _write_sysctl(path: str, value: str) -> None:
    """Write under /proc/sys, after checking that it really is procfs (not a fake dir)."""
    base = os.open("/proc/sys", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if sc.fs_type(base) != sc.PROC_SUPER_MAGIC:
            raise SyscallError(errno.EXDEV, "statfs", "/proc/sys is not procfs")
        resolve = sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS | sc.RESOLVE_NO_MAGICLINKS
        fd = sc.openat2(base, path[len("/proc/sys/") :], os.O_WRONLY, 0, resolve)
    finally:
        os.close(base)
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise SyscallError(exc.errno or errno.EIO, "write", path) from None
    finally:
        os.close(fd)
