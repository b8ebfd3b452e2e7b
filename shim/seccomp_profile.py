"""Docker's default seccomp profile, as an OCI `linux.seccomp` for the shim's default spec.

The facts are those of moby's `profiles/seccomp/default.json` (moby 25/26, which includes the
kernel 5.17-6.7 additions of moby#47341): deny by default with EPERM, allow a long list of
ordinary syscalls, and allow the dangerous ones only when the container holds the capability
that the kernel checks for them anyway (mount needs CAP_SYS_ADMIN, ptrace CAP_SYS_PTRACE, ...).
Without CAP_SYS_ADMIN, `clone` is allowed only without namespace flags and `clone3`, whose
flags a filter cannot read, fails with ENOSYS so that libcs fall back to `clone`.

Rules carry moby's `includes`/`excludes` (capabilities, architectures, minimum kernel);
`default_seccomp_profile` resolves them the way moby does for one container: a rule
applies when every included capability is in the bounding set, the architecture is
included, and none of the exclusions hold. Nothing here imports grpc: the profile is data.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

DOCKER_DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
"""The capabilities docker gives a container that asks for nothing else."""

EPERM = 1
ENOSYS = 38
AF_VSOCK = 40
# CLONE_NEWNS | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWCGROUP
CLONE_NAMESPACE_FLAGS = 0x7E020000

# moby's architecture names (Go's GOARCH as libseccomp spells it) for platform.machine().
_MACHINE_TO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "x86",
    "i686": "x86",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64": "mips64",
}

# archMap: the native architecture and the sub-architectures its processes may also use.
_ARCH_MAP = {
    "amd64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "arm64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "mips64": ("SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
    "mips64n32": ("SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"),
    "mipsel64": ("SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"),
    "mipsel64n32": ("SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"),
    "s390x": ("SCMP_ARCH_S390X", "SCMP_ARCH_S390"),
    "riscv64": ("SCMP_ARCH_RISCV64",),
}


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Always allowed: calls that act on the caller's own process, files and sockets.
_ALWAYS = _names("""
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod
fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32
getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage
getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr
inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy
io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen
listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget
msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
_newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc
pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink
readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr
rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask
sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat
sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
""")


@dataclass(frozen=True)
class _Rule:
    """One moby rule: names, action, args, and the conditions under which it applies."""

    names: tuple[str, ...]
    action: str = "SCMP_ACT_ALLOW"
    args: tuple[dict[str, Any], ...] = ()
    errno_ret: int | None = None
    caps: tuple[str, ...] = ()  # includes.caps: all must be in the bounding set
    arches: tuple[str, ...] = ()  # includes.arches: the native arch must be one
    min_kernel: tuple[int, int] | None = None  # includes.minKernel
    not_caps: tuple[str, ...] = ()  # excludes.caps: none may be in the bounding set
    not_arches: tuple[str, ...] = ()  # excludes.arches


def _arg0_eq(value: int) -> tuple[dict[str, Any], ...]:
    return ({"index": 0, "value": value, "op": "SCMP_CMP_EQ"},)


def _clone_flags(index: int) -> tuple[dict[str, Any], ...]:
    return (
        {"index": index, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
    )


_RULES: tuple[_Rule, ...] = (
    _Rule(_ALWAYS),
    # ptrace became safe to allow with kernel 4.8, which stopped it bypassing seccomp.
    _Rule(_names("process_vm_readv process_vm_writev ptrace"), min_kernel=(4, 8)),
    # Every socket family but AF_VSOCK, which reaches the host in a VM.
    _Rule(("socket",), args=({"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"},)),
    # personality: only PER_LINUX, PER_LINUX32, UNAME26 variants and the query value.
    _Rule(("personality",), args=_arg0_eq(0x0)),
    _Rule(("personality",), args=_arg0_eq(0x0008)),
    _Rule(("personality",), args=_arg0_eq(0x20000)),
    _Rule(("personality",), args=_arg0_eq(0x20008)),
    _Rule(("personality",), args=_arg0_eq(0xFFFFFFFF)),
    _Rule(_names("sync_file_range2 swapcontext"), arches=("ppc64le",)),
    _Rule(
        _names(
            "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls"
        ),
        arches=("arm", "arm64"),
    ),
    _Rule(("arch_prctl",), arches=("amd64", "x32")),
    _Rule(("modify_ldt",), arches=("amd64", "x32", "x86")),
    _Rule(
        _names("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
        arches=("s390", "s390x"),
    ),
    _Rule(("riscv_flush_icache",), arches=("riscv64",)),
    _Rule(("open_by_handle_at",), caps=("CAP_DAC_READ_SEARCH",)),
    _Rule(
        _names(
            "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount "
            "mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd "
            "setdomainname sethostname setns syslog umount umount2 unshare"
        ),
        caps=("CAP_SYS_ADMIN",),
    ),
    # Without CAP_SYS_ADMIN: clone without namespace flags (arg 1 holds them on s390).
    _Rule(
        ("clone",), args=_clone_flags(0), not_caps=("CAP_SYS_ADMIN",), not_arches=("s390", "s390x")
    ),
    _Rule(("clone",), args=_clone_flags(1), arches=("s390", "s390x"), not_caps=("CAP_SYS_ADMIN",)),
    # clone3 passes its flags in memory a filter cannot read: ENOSYS makes libcs use clone.
    _Rule(("clone3",), action="SCMP_ACT_ERRNO", errno_ret=ENOSYS, not_caps=("CAP_SYS_ADMIN",)),
    _Rule(("reboot",), caps=("CAP_SYS_BOOT",)),
    _Rule(("chroot",), caps=("CAP_SYS_CHROOT",)),
    _Rule(_names("delete_module init_module finit_module"), caps=("CAP_SYS_MODULE",)),
    _Rule(("acct",), caps=("CAP_SYS_PACCT",)),
    _Rule(
        _names("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace"),
        caps=("CAP_SYS_PTRACE",),
    ),
    _Rule(_names("iopl ioperm"), caps=("CAP_SYS_RAWIO",)),
    _Rule(_names("settimeofday stime clock_settime clock_settime64"), caps=("CAP_SYS_TIME",)),
    _Rule(("vhangup",), caps=("CAP_SYS_TTY_CONFIG",)),
    _Rule(
        _names("get_mempolicy mbind set_mempolicy set_mempolicy_home_node"), caps=("CAP_SYS_NICE",)
    ),
    _Rule(("syslog",), caps=("CAP_SYSLOG",)),
    _Rule(("bpf",), caps=("CAP_BPF",)),
    _Rule(("perf_event_open",), caps=("CAP_PERFMON",)),
)


def native_arch(machine: str | None = None) -> str:
    """moby's name for this machine's architecture ("amd64", "arm64", ...)."""
    m = machine or platform.machine()
    return _MACHINE_TO_ARCH.get(m, m)


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of a kernel release string such as "6.18.44-fc-v669"."""
    text = release or os.uname().release
    parts = [*text.split("-")[0].split("."), "0"][:2]
    return (_leading_int(parts[0]), _leading_int(parts[1]))


def _leading_int(text: str) -> int:
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits or "0")


def _applies(rule: _Rule, caps: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
    if rule.not_arches and arch in rule.not_arches:
        return False
    if rule.not_caps and any(c in caps for c in rule.not_caps):
        return False
    if rule.arches and arch not in rule.arches:
        return False
    if rule.caps and not all(c in caps for c in rule.caps):
        return False
    return rule.min_kernel is None or kernel >= rule.min_kernel


def _syscall(rule: _Rule) -> dict[str, Any]:
    entry: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
    if rule.errno_ret is not None:
        entry["errnoRet"] = rule.errno_ret
    if rule.args:
        entry["args"] = [dict(a) for a in rule.args]
    return entry


def default_seccomp_profile(
    capabilities: Iterable[str] | None = None,
    *,
    arch: str | None = None,
    kernel: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Docker's default profile resolved for one container, as OCI `linux.seccomp`.

    `capabilities` is the container's bounding set (docker's defaults when None); `arch`
    is moby's architecture name (this machine's when None); `kernel` is (major, minor)
    (the running kernel's when None). The result is a fresh dict the caller may change.
    """
    caps = frozenset(DOCKER_DEFAULT_CAPABILITIES if capabilities is None else capabilities)
    native = arch or native_arch()
    version = (kernel[0], kernel[1]) if kernel is not None else kernel_version()
    profile: dict[str, Any] = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM}
    if native in _ARCH_MAP:
        profile["architectures"] = list(_ARCH_MAP[native])
    profile["syscalls"] = [_syscall(r) for r in _RULES if _applies(r, caps, native, version)]
    return profile
