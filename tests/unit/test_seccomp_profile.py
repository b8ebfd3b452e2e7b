"""Docker's default seccomp profile, resolved for capabilities, architectures and kernels."""

from __future__ import annotations

from typing import Any

import pytest

from lowrun import seccomp
from shim.seccomp_profile import (
    CLONE_NAMESPACE_FLAGS,
    DOCKER_DEFAULT_CAPABILITIES,
    default_seccomp_profile,
    kernel_version,
    native_arch,
)

MODERN = (6, 1)


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in profile["syscalls"] if name in s["names"]]


def allowed_unconditionally(profile: dict[str, Any], name: str) -> bool:
    return any(
        s["action"] == "SCMP_ACT_ALLOW" and not s.get("args") for s in rules_for(profile, name)
    )


def docker(caps: Any = None, arch: str = "amd64", kernel: tuple[int, int] = MODERN) -> Any:
    return default_seccomp_profile(caps, arch=arch, kernel=kernel)


def test_denies_by_default_with_eperm() -> None:
    p = docker()
    assert p["defaultAction"] == "SCMP_ACT_ERRNO"
    assert p["defaultErrnoRet"] == 1


def test_amd64_covers_its_sub_architectures() -> None:
    assert docker()["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert docker(arch="arm64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "architectures" not in docker(arch="sparc64")


@pytest.mark.parametrize(
    "name", ["read", "write", "openat", "execve", "mkdir", "futex", "clock_gettime", "chown32"]
)
def test_ordinary_syscalls_are_allowed(name: str) -> None:
    assert allowed_unconditionally(docker(), name)


@pytest.mark.parametrize(
    "name",
    [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "pivot_root",
        "bpf",
        "keyctl",
        "add_key",
        "request_key",
        "init_module",
        "finit_module",
        "kexec_load",
        "reboot",
        "swapon",
        "open_by_handle_at",
        "perf_event_open",
        "kcmp",
        "iopl",
        "settimeofday",
        "userfaultfd",
        "sethostname",
    ],
)
def test_dangerous_syscalls_are_not_allowed_with_docker_defaults(name: str) -> None:
    assert rules_for(docker(), name) == []


def test_mount_and_friends_need_cap_sys_admin() -> None:
    with_admin = docker([*DOCKER_DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])
    for name in ("mount", "umount2", "unshare", "setns", "sethostname", "fsopen", "clone3"):
        assert allowed_unconditionally(with_admin, name), name
    assert not allowed_unconditionally(docker(), "mount")


def test_clone_without_sys_admin_is_limited_to_no_namespace_flags() -> None:
    (rule,) = rules_for(docker(), "clone")
    assert rule["action"] == "SCMP_ACT_ALLOW"
    assert rule["args"] == [
        {"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    assert (
        CLONE_NAMESPACE_FLAGS == 0x7E020000
    )  # NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP
    (rule3,) = rules_for(docker(), "clone3")
    assert rule3["action"] == "SCMP_ACT_ERRNO"
    assert rule3["errnoRet"] == 38  # ENOSYS: libc falls back to clone


def test_clone_with_sys_admin_is_free() -> None:
    p = docker(["CAP_SYS_ADMIN"])
    assert [r.get("args") for r in rules_for(p, "clone")] == [None]
    assert all(r["action"] == "SCMP_ACT_ALLOW" for r in rules_for(p, "clone3"))


def test_clone_flags_on_s390_are_argument_one() -> None:
    (rule,) = rules_for(docker(arch="s390x"), "clone")
    assert rule["args"][0]["index"] == 1


def test_personality_only_with_safe_personas() -> None:
    rules = rules_for(docker(), "personality")
    assert all(r["action"] == "SCMP_ACT_ALLOW" for r in rules)
    values = set()
    for r in rules:
        (arg,) = r["args"]
        assert arg["index"] == 0 and arg["op"] == "SCMP_CMP_EQ"
        values.add(arg["value"])
    assert values == {0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF}


def test_socket_allows_every_family_but_vsock() -> None:
    (rule,) = rules_for(docker(), "socket")
    assert rule["args"] == [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]


def test_ptrace_rules_follow_kernel_and_capability() -> None:
    # From kernel 4.8 on, ptrace cannot bypass seccomp, so docker allows it to everyone.
    assert allowed_unconditionally(docker(kernel=(4, 8)), "ptrace")
    assert allowed_unconditionally(docker(kernel=(6, 18)), "ptrace")
    assert rules_for(docker(kernel=(4, 4)), "ptrace") == []
    # CAP_SYS_PTRACE allows it on any kernel, with kcmp and pidfd_getfd.
    with_ptrace = docker(["CAP_SYS_PTRACE"], kernel=(4, 4))
    for name in ("ptrace", "kcmp", "pidfd_getfd", "process_vm_readv"):
        assert allowed_unconditionally(with_ptrace, name), name
    assert rules_for(docker(kernel=(6, 18)), "kcmp") == []


@pytest.mark.parametrize(
    ("cap", "names"),
    [
        ("CAP_SYS_BOOT", ["reboot"]),
        ("CAP_SYS_MODULE", ["init_module", "finit_module", "delete_module"]),
        ("CAP_SYS_PACCT", ["acct"]),
        ("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
        ("CAP_SYS_TIME", ["settimeofday", "clock_settime"]),
        ("CAP_SYS_TTY_CONFIG", ["vhangup"]),
        ("CAP_SYS_NICE", ["mbind", "set_mempolicy"]),
        ("CAP_SYSLOG", ["syslog"]),
        ("CAP_BPF", ["bpf"]),
        ("CAP_PERFMON", ["perf_event_open"]),
        ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
    ],
)
def test_capability_gated_rules(cap: str, names: list[str]) -> None:
    without = docker([])
    with_cap = docker([cap])
    for name in names:
        assert not allowed_unconditionally(without, name), name
        assert allowed_unconditionally(with_cap, name), name


def test_chroot_comes_with_docker_defaults() -> None:
    assert allowed_unconditionally(docker(), "chroot")  # CAP_SYS_CHROOT is a docker default
    assert not allowed_unconditionally(docker([]), "chroot")


def test_architecture_specific_rules() -> None:
    assert allowed_unconditionally(docker(arch="amd64"), "arch_prctl")
    assert allowed_unconditionally(docker(arch="amd64"), "modify_ldt")
    assert rules_for(docker(arch="amd64"), "set_tls") == []
    arm = docker(arch="arm64")
    assert allowed_unconditionally(arm, "set_tls")
    assert rules_for(arm, "arch_prctl") == []


def test_each_call_returns_a_fresh_dict() -> None:
    a = docker()
    a["syscalls"].clear()
    a["syscalls"].append({"names": ["x"], "action": "SCMP_ACT_ALLOW"})
    assert len(docker()["syscalls"]) > 1


def test_defaults_resolve_for_this_machine() -> None:
    p = default_seccomp_profile()
    assert p == default_seccomp_profile(
        DOCKER_DEFAULT_CAPABILITIES, arch=native_arch(), kernel=kernel_version()
    )


def test_kernel_version_parsing() -> None:
    assert kernel_version("6.18.44-fc-v669") == (6, 18)
    assert kernel_version("4.8.0") == (4, 8)
    assert kernel_version("5.15rc1") == (5, 15)
    assert kernel_version("6") == (6, 0)


@pytest.mark.parametrize("caps", [None, [], ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYSLOG"]])
def test_profile_is_a_valid_linux_seccomp_for_lowrun(caps: Any) -> None:
    p = docker(caps)
    plan = seccomp.plan(p)
    assert plan.default_action == seccomp.ACT_ERRNO | 1
    if seccomp.available():
        bpf = seccomp.compile(p).bpf()
        rets = {
            int.from_bytes(bpf[i + 4 : i + 8], "little")
            for i in range(0, len(bpf), 8)
            if bpf[i] == 0x06
        }
        assert seccomp.ACT_ERRNO | 1 in rets
        assert seccomp.ACT_ALLOW in rets
