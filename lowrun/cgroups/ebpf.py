"""bpf(2) for cgroup v2 device control: load a CGROUP_DEVICE program, attach it, drop the old.

Only the few commands the device controller needs, through ctypes. The program is
attached with BPF_F_ALLOW_MULTI (as runc does) and the programs attached before it are
detached afterwards, so the cgroup is never without a filter during an update. An
attached program stays with the cgroup after our file descriptors close, and goes
away with it on rmdir.
"""

from __future__ import annotations

import ctypes
import os
import platform

from lowrun.cgroups import CgroupError

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
ATTR_SIZE = 128

_SYSCALL_NR = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    nr = _SYSCALL_NR.get(platform.machine())
    if nr is None:
        raise CgroupError(f"bpf(2) is not wired for the {platform.machine()} architecture")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(ATTR_SIZE))
    if ret < 0:
        err = ctypes.get_errno()
        raise CgroupError(f"{what}: {os.strerror(err)}", errno=err)
    return int(ret)


def _attr(*fields: tuple[int, str, int]) -> ctypes.Array[ctypes.c_char]:
    """A zeroed bpf_attr with (offset, struct format, value) fields set."""
    import struct

    buf = ctypes.create_string_buffer(ATTR_SIZE)
    for offset, fmt, value in fields:
        struct.pack_into(fmt, buf, offset, value)
    return buf


def load_device_program(code: bytes) -> int:
    """Load the program; returns its fd. The verifier's log is in the error on failure."""
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = _attr(
        (0, "<I", BPF_PROG_TYPE_CGROUP_DEVICE),
        (4, "<I", len(code) // 8),
        (8, "<Q", ctypes.addressof(insns)),
        (16, "<Q", ctypes.addressof(license_)),
        (24, "<I", 1),  # log_level
        (28, "<I", len(log)),
        (32, "<Q", ctypes.addressof(log)),
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr, "cannot load the device cgroup program")
    except CgroupError as e:
        verifier = log.value.decode(errors="replace").strip()
        if verifier:
            raise CgroupError(f"{e.message}; verifier: {verifier[-500:]}", errno=e.errno) from e
        raise


def attached_program_ids(cgroup_fd: int) -> list[int]:
    ids = (ctypes.c_uint32 * 64)()
    attr = _attr(
        (0, "<I", cgroup_fd),
        (4, "<I", BPF_CGROUP_DEVICE),
        (16, "<Q", ctypes.addressof(ids)),
        (24, "<I", 64),
    )
    _bpf(BPF_PROG_QUERY, attr, "cannot list the device programs of the cgroup")
    count = int.from_bytes(bytes(attr)[24:28], "little")
    return [int(ids[i]) for i in range(min(count, 64))]


def replace_device_program(cgroup_dir: str, code: bytes) -> None:
    """Attach `code` to the cgroup, then detach the device programs attached before it."""
    cgroup_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    prog_fd = -1
    try:
        old = attached_program_ids(cgroup_fd)
        prog_fd = load_device_program(code)
        _bpf(
            BPF_PROG_ATTACH,
            _attr(
                (0, "<I", cgroup_fd),
                (4, "<I", prog_fd),
                (8, "<I", BPF_CGROUP_DEVICE),
                (12, "<I", BPF_F_ALLOW_MULTI),
            ),
            f"cannot attach the device program to {cgroup_dir}",
        )
        for prog_id in old:
            old_fd = _bpf(
                BPF_PROG_GET_FD_BY_ID,
                _attr((0, "<I", prog_id)),
                f"cannot open device program {prog_id}",
            )
            try:
                _bpf(
                    BPF_PROG_DETACH,
                    _attr((0, "<I", cgroup_fd), (4, "<I", old_fd), (8, "<I", BPF_CGROUP_DEVICE)),
                    f"cannot detach device program {prog_id} from {cgroup_dir}",
                )
            finally:
                os.close(old_fd)
    finally:
        if prog_fd >= 0:
            os.close(prog_fd)
        os.close(cgroup_fd)
