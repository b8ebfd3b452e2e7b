"""The system calls Python 3.11 does not offer, behind one small facade.

Every call raises `SyscallError` with the errno and the object it was applied to.
Unit tests of the logic above this module replace it with a fake; integration
tests use the real kernel.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from lowrun.errors import SyscallError

_libc = ctypes.CDLL(None, use_errno=True)

# Namespaces (linux/sched.h)
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags (linux/mount.h)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_POSIXACL = 1 << 16
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# umount2(2) flags
MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# prctl(2) options
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# openat2(2) resolve flags (linux/openat2.h)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# x86_64 syscall numbers for calls glibc 2.36 has no wrapper for.
SYS_pivot_root = 155
SYS_openat2 = 437
SYS_pidfd_open = 434
SYS_pidfd_send_signal = 424
SYS_move_mount = 429
SYS_open_tree = 428

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004

_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]


def _fs(value: str | bytes | None) -> bytes | None:
    if value is None:
        return None
    return os.fsencode(value)


def _check(result: int, call: str, what: str = "") -> int:
    if result < 0:
        raise SyscallError(ctypes.get_errno(), call, what)
    return result


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    res = _libc.mount(_fs(source), _fs(target), _fs(fstype), flags, _fs(data))
    _check(res, "mount", f"{source or fstype or 'none'} on {target}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_fs(target), flags), "umount", target)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare", hex(flags))


def setns(fd: int, nstype: int = 0, what: str = "") -> None:
    _check(_libc.setns(fd, nstype), "setns", what or f"fd {fd}")


def pivot_root(new_root: str, put_old: str) -> None:
    res = _libc.syscall(SYS_pivot_root, _fs(new_root), _fs(put_old))
    _check(res, "pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname", name)


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), "setdomainname", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), "prctl", str(option))


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def clear_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 0)


def is_child_subreaper() -> bool:
    value = ctypes.c_int(0)
    _check(_libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(value), 0, 0, 0), "prctl",
           "PR_GET_CHILD_SUBREAPER")
    return bool(value.value)


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """Open `path` relative to `dirfd`; with RESOLVE_IN_ROOT, symlinks cannot leave dirfd."""
    how = struct.pack("QQQ", flags | os.O_CLOEXEC, mode, resolve)
    buf = ctypes.create_string_buffer(how, len(how))
    res = _libc.syscall(
        SYS_openat2,
        ctypes.c_int(dirfd),
        _fs(path),
        buf,
        ctypes.c_size_t(len(how)),
    )
    return _check(res, "openat2", path)


def pidfd_open(pid: int) -> int:
    return _check(_libc.syscall(SYS_pidfd_open, ctypes.c_int(pid), 0), "pidfd_open", str(pid))


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    res = _libc.syscall(SYS_pidfd_send_signal, ctypes.c_int(pidfd), ctypes.c_int(sig), None, 0)
    _check(res, "pidfd_send_signal", str(sig))


def fd_path(fd: int) -> str:
    """The /proc path through which mount(2) and friends can use an O_PATH fd."""
    return f"/proc/self/fd/{fd}"


# --- Capabilities and privilege bits (capabilities.py, seccomp.py) ---
PR_GET_KEEPCAPS = 7
PR_SET_KEEPCAPS = 8
PR_GET_SECCOMP = 21
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_LOWER = 3

# linux/capability.h: version 3 takes two data structs (capabilities 0-31, 32-63).
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class CapUserHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapUserData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_CapData2 = CapUserData * 2
_libc.capget.argtypes = [ctypes.POINTER(CapUserHeader), ctypes.POINTER(CapUserData)]
_libc.capset.argtypes = [ctypes.POINTER(CapUserHeader), ctypes.POINTER(CapUserData)]


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of `pid` (0: the calling thread) as 64-bit masks."""
    header = CapUserHeader(LINUX_CAPABILITY_VERSION_3, pid)
    data = _CapData2()
    _check(_libc.capget(ctypes.byref(header), data), "capget", str(pid))
    return (
        data[0].effective | data[1].effective << 32,
        data[0].permitted | data[1].permitted << 32,
        data[0].inheritable | data[1].inheritable << 32,
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's three capability sets from 64-bit masks."""
    header = CapUserHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapData2()
    low = 0xFFFFFFFF
    data[0].effective, data[1].effective = effective & low, effective >> 32
    data[0].permitted, data[1].permitted = permitted & low, permitted >> 32
    data[0].inheritable, data[1].inheritable = inheritable & low, inheritable >> 32
    what = f"effective={effective:#x} permitted={permitted:#x} inheritable={inheritable:#x}"
    _check(_libc.capset(ctypes.byref(header), data), "capset", what)


def get_no_new_privs() -> bool:
    return prctl(PR_GET_NO_NEW_PRIVS) == 1


def set_keepcaps(keep: bool) -> None:
    prctl(PR_SET_KEEPCAPS, 1 if keep else 0)


# mount_setattr(2) (linux/mount.h): attributes changed on a whole mount tree at once.
SYS_mount_setattr = 442
MOUNT_ATTR_RDONLY = 0x00000001
MOUNT_ATTR_NOSUID = 0x00000002
MOUNT_ATTR_NODEV = 0x00000004
MOUNT_ATTR_NOEXEC = 0x00000008
MOUNT_ATTR__ATIME = 0x00000070
MOUNT_ATTR_RELATIME = 0x00000000
MOUNT_ATTR_NOATIME = 0x00000010
MOUNT_ATTR_STRICTATIME = 0x00000020
MOUNT_ATTR_NODIRATIME = 0x00000080
MOUNT_ATTR_NOSYMFOLLOW = 0x00200000


def mount_setattr(
    fd: int, attr_set: int, attr_clr: int = 0, propagation: int = 0, recursive: bool = True
) -> None:
    """Change the attributes of the mount `fd` refers to (and of its submounts if recursive)."""
    attr = struct.pack("QQQQ", attr_set, attr_clr, propagation, 0)
    buf = ctypes.create_string_buffer(attr, len(attr))
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    res = _libc.syscall(
        SYS_mount_setattr, ctypes.c_int(fd), b"", ctypes.c_uint(flags), buf,
        ctypes.c_size_t(len(attr)),
    )
    _check(res, "mount_setattr", fd_path(fd))


# statfs(2) f_type values (linux/magic.h) of the filesystems the rootfs code checks.
PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
TMPFS_MAGIC = 0x01021994
CGROUP_SUPER_MAGIC = 0x27E0EB
CGROUP2_SUPER_MAGIC = 0x63677270


def fs_type(fd: int) -> int:
    """The f_type of the filesystem `fd` (O_PATH is fine) lives on; os.statvfs lacks it."""
    buf = ctypes.create_string_buffer(128)  # struct statfs is 120 bytes on x86_64
    _check(_libc.fstatfs(ctypes.c_int(fd), buf), "fstatfs", fd_path(fd))
    return int(struct.unpack_from("q", buf.raw)[0])


# --- seccomp(2), for loading a BPF program lowrun has patched (seccomp.py) ---
SYS_seccomp = 317
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_mode_filter(program: bytes, flags: int = 0) -> None:
    """Install a classic BPF program (struct sock_filter array) as this thread's filter.

    Without no_new_privs the kernel requires CAP_SYS_ADMIN (EACCES otherwise).
    """
    if not program or len(program) % 8:
        size = len(program)
        raise ValueError(f"a BPF program is a non-empty array of 8-byte instructions, not {size} B")
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    what = f"{len(program) // 8} instructions, flags {flags:#x}"
    mode = ctypes.c_uint(SECCOMP_SET_MODE_FILTER)
    res = _libc.syscall(SYS_seccomp, mode, ctypes.c_uint(flags), ctypes.byref(fprog))
    if res > 0:  # TSYNC: the id of a thread that could not be synchronised
        raise SyscallError(errno.ESRCH, "seccomp", f"{what}: thread {res} not synchronised")
    _check(res, "seccomp", what)


def open_tree(path: str, flags: int = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC) -> int:
    """open_tree(2) from the current directory's namespace: with OPEN_TREE_CLONE an fd of
    a new, detached bind mount of `path` that no mount namespace sees."""
    res = _libc.syscall(SYS_open_tree, ctypes.c_int(AT_FDCWD), _fs(path), ctypes.c_uint(flags))
    return _check(res, "open_tree", path)
