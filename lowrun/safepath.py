"""Paths inside a root directory, resolved and created without ever leaving it.

A bundle's rootfs is untrusted: any component of a mount destination may be a
symlink, absolute or `../../..`, meant to make the runtime mount or create something
on the host (the CVE-2021-30465 class). Every lookup here is an openat2(2) relative
to an fd of the root with RESOLVE_IN_ROOT (symlinks and `..` are clamped to the root,
as if the process were chrooted) and RESOLVE_NO_MAGICLINKS (no /proc/PID/root jumps).
Missing components are created with *at calls relative to an fd of their parent, and
the caller mounts onto /proc/self/fd/N of the O_PATH fd it gets back, so that a
symlink swapped in after the check cannot redirect the mount.
"""

from __future__ import annotations

import errno
import os
import stat

from lowrun import syscalls as sc
from lowrun.errors import SyscallError

RESOLVE = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
MAX_SYMLINKS = 40
"""As the kernel's limit: a dangling symlink chain longer than this fails with ELOOP."""


def split(path: str) -> list[str]:
    """Components of a path, without empty and `.` ones; `..` is kept for the kernel."""
    return [p for p in path.split("/") if p not in ("", ".")]


def splice_link(parts: list[str], index: int, target: str) -> tuple[list[str], int]:
    """Replace the symlink at parts[index] with its target; return the parts and where to go on.

    An absolute target restarts from the root (which is the container's root, not
    the host's); a relative one continues from the symlink's directory.
    """
    rest = parts[index + 1 :]
    if target.startswith("/"):
        return split(target) + rest, 0
    return parts[:index] + split(target) + rest, index


def open_in_root(rootfd: int, path: str, flags: int = os.O_PATH, no_symlinks: bool = False) -> int:
    """Open `path` as seen from the root `rootfd`, never outside it (ENOENT if missing)."""
    resolve = RESOLVE | (sc.RESOLVE_NO_SYMLINKS if no_symlinks else 0)
    return sc.openat2(rootfd, "/".join(split(path)) or ".", flags, 0, resolve)


def _create(parent: int, name: str, kind: str, mode: int, path: str) -> None:
    try:
        if kind == "dir":
            os.mkdir(name, mode, dir_fd=parent)
        else:
            flags = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(name, flags, mode, dir_fd=parent))
    except FileExistsError:
        pass  # raced with someone else: the caller resolves it again
    except OSError as exc:
        call = "mkdirat" if kind == "dir" else "openat"
        raise SyscallError(exc.errno or errno.EIO, call, path) from None


def _deepest_existing(rootfd: int, parts: list[str], no_symlinks: bool) -> int:
    """How many leading components resolve already (usually all but the last one).

    Only a shortcut: the walk in `ensure` re-checks every step from there on.
    """
    for count in range(len(parts) - 1, 0, -1):
        try:
            os.close(open_in_root(rootfd, "/".join(parts[:count]), no_symlinks=no_symlinks))
            return count
        except SyscallError:
            continue
    return 0


def ensure(
    rootfd: int, path: str, kind: str = "dir", mode: int = 0o755, no_symlinks: bool = False
) -> int:
    """An O_PATH fd of `path` inside the root, creating what is missing.

    Missing parents are directories; the last component is created as `kind`
    ("dir" or "file") if it does not exist. A dangling symlink on the way is followed
    inside the root (its target is created there), or refused with ELOOP when
    `no_symlinks`. An existing object of another type is returned as it is: the
    caller decides whether that is an error.
    """
    try:
        return open_in_root(rootfd, path, no_symlinks=no_symlinks)  # the common case
    except SyscallError as exc:
        if exc.errno != errno.ENOENT:
            raise
    parts = split(path)
    index = _deepest_existing(rootfd, parts, no_symlinks)
    hops = 0
    while index < len(parts):
        prefix = "/".join(parts[: index + 1])
        try:
            os.close(open_in_root(rootfd, prefix, no_symlinks=no_symlinks))
            index += 1
            continue
        except SyscallError as exc:
            if exc.errno != errno.ENOENT:
                raise SyscallError(exc.errno or errno.EIO, "openat2", "/" + prefix) from None
        hops += 1
        if hops > MAX_SYMLINKS + len(parts):
            raise SyscallError(errno.ELOOP, "openat2", "/" + prefix)
        parent = open_in_root(rootfd, "/".join(parts[:index]), os.O_PATH | os.O_DIRECTORY,
                              no_symlinks)
        try:
            name = parts[index]
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                last = index == len(parts) - 1
                _create(parent, name, kind if last else "dir", mode, "/" + prefix)
                continue
            except OSError as exc:
                raise SyscallError(exc.errno or errno.EIO, "fstatat", "/" + prefix) from None
            if not stat.S_ISLNK(st.st_mode):
                continue  # appeared meanwhile: resolve again
            if no_symlinks:
                raise SyscallError(errno.ELOOP, "openat2", "/" + prefix)
            target = os.readlink(name, dir_fd=parent)
        finally:
            os.close(parent)
        parts, index = splice_link(parts, index, target)
    return open_in_root(rootfd, "/".join(parts), no_symlinks=no_symlinks)


def host_path(fd: int) -> str:
    """Where `fd` is, as a path in this process's mount namespace and root."""
    return os.readlink(sc.fd_path(fd))


def container_path(fd: int, root: str) -> str:
    """The path of `fd` inside `root` (a real, symlink-free path); EXDEV if it is outside."""
    where = host_path(fd)
    root = root.rstrip("/")
    if where == root or (root == "" and where == "/"):
        return "/"
    if root and where.startswith(root + "/"):
        return where[len(root) :]
    if not root and where.startswith("/"):
        return where
    raise SyscallError(errno.EXDEV, "resolve", f"{where} is outside {root or '/'}")


def mount_id(fd: int) -> int:
    """The id of the mount `fd` is on (as in mountinfo), from /proc/self/fdinfo."""
    with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
        for line in f:
            if line.startswith(b"mnt_id:"):
                return int(line.split()[1])
    raise SyscallError(errno.ENOSYS, "fdinfo", f"no mnt_id for fd {fd}")
