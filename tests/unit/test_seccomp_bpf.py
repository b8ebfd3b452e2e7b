"""The compiled filters, run in a small classic-BPF interpreter: what would the kernel answer?

No privilege and no filter loaded: each program is evaluated here on a `struct
seccomp_data` built by the test, so every rule of docker's profile, the argument
comparisons (64-bit, masked) and lowrun's ENOSYS prologue can be checked one call at a time.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Sequence
from typing import Any

import pytest

from lowrun import seccomp
from shim.seccomp_profile import DOCKER_DEFAULT_CAPABILITIES, default_seccomp_profile

pytestmark = pytest.mark.skipif(not seccomp.available(), reason="libseccomp not available")

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32 = 0x40000000

ALLOW = seccomp.ACT_ALLOW
EPERM = seccomp.ACT_ERRNO | errno.EPERM
ENOSYS = seccomp.ACT_ERRNO | errno.ENOSYS

# x86_64 numbers
NR = {
    "read": 0,
    "socket": 41,
    "clone": 56,
    "mkdir": 83,
    "personality": 135,
    "mount": 165,
    "nfsservctl": 180,
    "keyctl": 250,
    "unshare": 272,
    "clone3": 435,
    "listmount": 458,
    "mseal": 462,
}
CLONE_NEWUSER = 0x10000000
SIGCHLD = 17
AF_INET = 2
AF_VSOCK = 40

MASK32 = 0xFFFFFFFF


def run_bpf(
    program: bytes, nr: int, arch: int = AUDIT_ARCH_X86_64, args: Sequence[int] = ()
) -> int:
    """Evaluate a classic BPF seccomp program on one syscall; returns the filter's verdict."""
    full = [*args, *([0] * (6 - len(args)))]
    data = struct.pack("=iIQ6Q", nr, arch, 0, *full)
    insns = [struct.unpack_from("=HBBI", program, off) for off in range(0, len(program), 8)]
    a = x = 0
    mem = [0] * 16
    pc = 0
    for _ in range(100_000):
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        src = x if code & 0x08 else k
        if code == 0x20:  # ld [k]
            a = struct.unpack_from("=I", data, k)[0]
        elif code == 0x00:  # ld #k
            a = k
        elif code == 0x60:  # ld M[k]
            a = mem[k]
        elif code == 0x01:  # ldx #k
            x = k
        elif code == 0x61:  # ldx M[k]
            x = mem[k]
        elif code == 0x02:  # st M[k]
            mem[k] = a
        elif code == 0x03:  # stx M[k]
            mem[k] = x
        elif code == 0x07:  # tax
            x = a
        elif code == 0x87:  # txa
            a = x
        elif cls == 0x04:  # alu
            op = code & 0xF0
            if op == 0x50:
                a &= src
            elif op == 0x40:
                a |= src
            elif op == 0x00:
                a = (a + src) & MASK32
            elif op == 0x10:
                a = (a - src) & MASK32
            else:
                raise AssertionError(f"alu op {code:#x}")
        elif code == 0x05:  # ja
            pc += k
        elif cls == 0x05:  # conditional jumps
            op = code & 0xF0
            if op == 0x10:
                taken = a == src
            elif op == 0x20:
                taken = a > src
            elif op == 0x30:
                taken = a >= src
            elif op == 0x40:
                taken = bool(a & src)
            else:
                raise AssertionError(f"jump op {code:#x}")
            pc += jt if taken else jf
        elif code == 0x06:  # ret #k
            return int(k)
        elif code == 0x16:  # ret a
            return a
        else:
            raise AssertionError(f"opcode {code:#x} at {pc - 1}")
    raise AssertionError("BPF program did not return")


@pytest.fixture(scope="module")
def docker_filter() -> bytes:
    profile = default_seccomp_profile(DOCKER_DEFAULT_CAPABILITIES, arch="amd64", kernel=(6, 1))
    return seccomp.compile(profile).bpf()


@pytest.fixture(scope="module")
def admin_filter() -> bytes:
    caps = [*DOCKER_DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"]
    return seccomp.compile(default_seccomp_profile(caps, arch="amd64", kernel=(6, 1))).bpf()


@pytest.mark.parametrize(
    ("call", "args", "verdict"),
    [
        ("read", (), ALLOW),
        ("mkdir", (), ALLOW),
        ("mount", (), EPERM),
        ("unshare", (CLONE_NEWUSER,), EPERM),
        ("keyctl", (), EPERM),
        ("nfsservctl", (), EPERM),  # known to the profile's era, not allowed: the default
        ("clone", (SIGCHLD,), ALLOW),
        ("clone", (SIGCHLD | CLONE_NEWUSER,), EPERM),
        ("clone3", (), ENOSYS),
        ("personality", (0,), ALLOW),
        ("personality", (0xFFFFFFFF,), ALLOW),
        ("personality", (0x0008,), ALLOW),
        ("personality", (0x0040000,), EPERM),  # ADDR_NO_RANDOMIZE
        ("personality", (0x0400000,), EPERM),  # READ_IMPLIES_EXEC
        ("socket", (AF_INET,), ALLOW),
        ("socket", (AF_VSOCK,), EPERM),
        ("mseal", (), ENOSYS),  # newer than every syscall the profile names
        ("listmount", (), ENOSYS),
    ],
)
def test_docker_profile_verdicts(docker_filter: bytes, call: str, args: Any, verdict: int) -> None:
    assert run_bpf(docker_filter, NR[call], args=args) == verdict


@pytest.mark.parametrize(
    ("call", "args"),
    [("mount", ()), ("unshare", (CLONE_NEWUSER,)), ("clone", (CLONE_NEWUSER,)), ("clone3", ())],
)
def test_cap_sys_admin_opens_the_namespace_calls(admin_filter: bytes, call: str, args: Any) -> None:
    assert run_bpf(admin_filter, NR[call], args=args) == ALLOW


def test_docker_profile_other_abis(docker_filter: bytes) -> None:
    # i386 and x32 are in docker's amd64 architectures: their calls are filtered too.
    assert run_bpf(docker_filter, 3, arch=AUDIT_ARCH_I386) == ALLOW  # read
    assert run_bpf(docker_filter, 21, arch=AUDIT_ARCH_I386) == EPERM  # mount
    assert run_bpf(docker_filter, 600, arch=AUDIT_ARCH_I386) == ENOSYS
    assert run_bpf(docker_filter, X32 | 0, arch=AUDIT_ARCH_X86_64) == ALLOW  # x32 read
    assert run_bpf(docker_filter, X32 | 165, arch=AUDIT_ARCH_X86_64) == EPERM  # x32 mount
    assert run_bpf(docker_filter, X32 | 600, arch=AUDIT_ARCH_X86_64) == ENOSYS
    # An architecture outside the filter is killed (libseccomp's bad-arch action).
    assert run_bpf(docker_filter, 0, arch=AUDIT_ARCH_AARCH64) == seccomp.ACT_KILL_THREAD


def test_no_enosys_prologue_when_everything_is_allowed_by_default() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
    }
    bpf = seccomp.compile(spec).bpf()
    assert run_bpf(bpf, NR["mseal"]) == ALLOW  # the kernel itself answers ENOSYS if unknown
    assert run_bpf(bpf, NR["mkdir"]) == EPERM


def test_enosys_prologue_alone() -> None:
    allow = struct.pack("=HBBI", 0x06, 0, 0, ALLOW)
    assert seccomp.enosys_stub({}) == b""
    native = seccomp.enosys_stub({AUDIT_ARCH_X86_64: 100}) + allow
    assert run_bpf(native, 100) == ALLOW
    assert run_bpf(native, 101) == ENOSYS
    assert run_bpf(native, X32 | 500) == ALLOW  # x32 not described: left to the program
    assert run_bpf(native, 500, arch=AUDIT_ARCH_I386) == ALLOW
    both = seccomp.enosys_stub({AUDIT_ARCH_X86_64: 100, seccomp.SCMP_ARCH_X32: X32 | 50}) + allow
    assert run_bpf(both, X32 | 50) == ALLOW
    assert run_bpf(both, X32 | 51) == ENOSYS
    assert run_bpf(both, 101) == ENOSYS
    three = (
        seccomp.enosys_stub(
            {AUDIT_ARCH_X86_64: 100, seccomp.SCMP_ARCH_X32: X32 | 50, AUDIT_ARCH_I386: 30}
        )
        + allow
    )
    assert run_bpf(three, 31, arch=AUDIT_ARCH_I386) == ENOSYS
    assert run_bpf(three, 30, arch=AUDIT_ARCH_I386) == ALLOW
    assert run_bpf(three, 99) == ALLOW


def _one_rule(op: str, value: int, value_two: int = 0, index: int = 0) -> bytes:
    arg = {"index": index, "value": value, "valueTwo": value_two, "op": op}
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [arg]}],
    }
    return seccomp.compile(spec).bpf()


def _blocked(bpf: bytes, value: int, index: int = 0) -> bool:
    args = [0] * 6
    args[index] = value
    return run_bpf(bpf, NR["personality"], args=args) == EPERM


@pytest.mark.parametrize(
    ("op", "value", "blocked", "passed"),
    [
        ("SCMP_CMP_EQ", 5, [5], [4, 6, 1 << 32 | 5]),
        ("SCMP_CMP_NE", 5, [4, 6, 1 << 32 | 5], [5]),
        ("SCMP_CMP_LT", 5, [0, 4], [5, 6, 1 << 40]),
        ("SCMP_CMP_LE", 5, [0, 5], [6, 1 << 40]),
        ("SCMP_CMP_GT", 5, [6, 1 << 40], [0, 5]),
        ("SCMP_CMP_GE", 5, [5, 1 << 40], [0, 4]),
        ("SCMP_CMP_EQ", 1 << 32 | 5, [1 << 32 | 5], [5, 1 << 32]),
    ],
)
def test_comparisons_use_all_64_bits(
    op: str, value: int, blocked: list[int], passed: list[int]
) -> None:
    bpf = _one_rule(op, value)
    for v in blocked:
        assert _blocked(bpf, v), f"{op} {value:#x} should match {v:#x}"
    for v in passed:
        assert not _blocked(bpf, v), f"{op} {value:#x} should not match {v:#x}"


def test_masked_eq_takes_the_mask_then_the_datum() -> None:
    bpf = _one_rule("SCMP_CMP_MASKED_EQ", 0xF0, 0x30)
    assert _blocked(bpf, 0x30)
    assert _blocked(bpf, 0x3F)
    assert not _blocked(bpf, 0x40)
    assert not _blocked(bpf, 0x0)


def test_condition_on_another_argument() -> None:
    bpf = _one_rule("SCMP_CMP_EQ", 7, index=3)
    assert _blocked(bpf, 7, index=3)
    assert not _blocked(bpf, 7, index=0)


def test_same_argument_twice_is_an_or() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 9, "op": "SCMP_CMP_EQ"},
                ],
            }
        ],
    }
    bpf = seccomp.compile(spec).bpf()
    assert _blocked(bpf, 8) and _blocked(bpf, 9)
    assert not _blocked(bpf, 10)


def test_different_arguments_are_an_and() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                ],
            }
        ],
    }
    bpf = seccomp.compile(spec).bpf()
    assert run_bpf(bpf, NR["personality"], args=(8, 9)) == EPERM
    assert run_bpf(bpf, NR["personality"], args=(8, 0)) == ALLOW
    assert run_bpf(bpf, NR["personality"], args=(0, 9)) == ALLOW
