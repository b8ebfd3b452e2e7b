"""`linux.seccomp` validation (JSON paths) and the BPF libseccomp compiles from it.

Compiling needs libseccomp but no privilege: nothing is loaded into the kernel here.
"""

from __future__ import annotations

import copy
import errno
import random
import struct
from typing import Any

import pytest

from lowrun import seccomp
from lowrun.errors import ConfigError

needs_libseccomp = pytest.mark.skipif(not seccomp.available(), reason="libseccomp not available")

NR_MKDIR = 83  # x86_64
NR_PERSONALITY = 135

BPF_RET_K = 0x06
BPF_JMP_JEQ_K = 0x15


def instructions(bpf: bytes) -> list[tuple[int, int, int, int]]:
    """struct sock_filter: u16 code, u8 jt, u8 jf, u32 k."""
    assert len(bpf) % 8 == 0
    return [struct.unpack_from("=HBBI", bpf, off) for off in range(0, len(bpf), 8)]


def returns(bpf: bytes) -> set[int]:
    return {k for code, _, _, k in instructions(bpf) if code == BPF_RET_K}


def compared(bpf: bytes) -> set[int]:
    return {k for code, _, _, k in instructions(bpf) if code == BPF_JMP_JEQ_K}


def mkdir_spec(errno_ret: int | None = 13, **extra: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}
    if errno_ret is not None:
        rule["errnoRet"] = errno_ret
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule], **extra}


# --- validation, no libseccomp needed ---


def test_plan_actions_and_errno_defaults() -> None:
    p = seccomp.plan(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "syscalls": [
                {"names": ["a", "b"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["c"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["d"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
                {"names": ["e"], "action": "SCMP_ACT_KILL", "errnoRet": 9},
                {"names": ["f"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["g"], "action": "SCMP_ACT_LOG"},
                {"names": ["h"], "action": "SCMP_ACT_TRAP"},
            ],
        }
    )
    assert p.default_action == seccomp.ACT_ERRNO | 38
    actions = {r.name: r.action for r in p.rules}
    assert actions == {
        "a": seccomp.ACT_ALLOW,
        "b": seccomp.ACT_ALLOW,
        "c": seccomp.ACT_ERRNO | errno.EPERM,
        "d": seccomp.ACT_TRACE | 7,
        "e": seccomp.ACT_KILL_THREAD,  # errnoRet ignored, as runc does
        "f": seccomp.ACT_KILL_PROCESS,
        "g": seccomp.ACT_LOG,
        "h": seccomp.ACT_TRAP,
    }
    assert [r.where for r in p.rules][:3] == [
        "$.linux.seccomp.syscalls[0]",
        "$.linux.seccomp.syscalls[0]",
        "$.linux.seccomp.syscalls[1]",
    ]


def test_plan_conditions() -> None:
    p = seccomp.plan(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["clone"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [
                        {
                            "index": 0,
                            "value": 0x7E020000,
                            "valueTwo": 0,
                            "op": "SCMP_CMP_MASKED_EQ",
                        },
                        {"index": 2, "value": 5, "op": "SCMP_CMP_GE"},
                    ],
                }
            ],
        }
    )
    (rule,) = p.rules
    assert rule.conditions == (
        seccomp.Condition(arg=0, op=7, value=0x7E020000, value_two=0),
        seccomp.Condition(arg=2, op=5, value=5, value_two=0),
    )


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda s: s.pop("defaultAction"), "$.linux.seccomp.defaultAction"),
        (lambda s: s.update(defaultAction="SCMP_ACT_MAYBE"), "$.linux.seccomp.defaultAction"),
        (
            lambda s: s.update(defaultAction="SCMP_ACT_TRACE", defaultErrnoRet=-1),
            "$.linux.seccomp.defaultErrnoRet",
        ),
        (
            lambda s: s.update(defaultAction="SCMP_ACT_ERRNO", defaultErrnoRet=70000),
            "$.linux.seccomp.defaultErrnoRet",
        ),
        (
            lambda s: s.update(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]),
            "$.linux.seccomp.architectures[1]",
        ),
        (lambda s: s.update(architectures="SCMP_ARCH_X86_64"), "$.linux.seccomp.architectures"),
        (
            lambda s: s.update(
                flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_NEW_LISTENER"]
            ),
            "$.linux.seccomp.flags[1]",
        ),
        (lambda s: s.update(syscalls={"names": ["mkdir"]}), "$.linux.seccomp.syscalls"),
        (lambda s: s["syscalls"].append("mkdir"), "$.linux.seccomp.syscalls[1]"),
        (lambda s: s["syscalls"][0].update(names="mkdir"), "$.linux.seccomp.syscalls[0].names"),
        (
            lambda s: s["syscalls"][0].update(names=["mkdir", 3]),
            "$.linux.seccomp.syscalls[0].names",
        ),
        (lambda s: s["syscalls"][0].pop("action"), "$.linux.seccomp.syscalls[0].action"),
        (
            lambda s: s["syscalls"][0].update(action="SCMP_ACT_NOTIFY"),
            "$.linux.seccomp.syscalls[0].action",
        ),
        (lambda s: s["syscalls"][0].update(errnoRet="13"), "$.linux.seccomp.syscalls[0].errnoRet"),
        (lambda s: s["syscalls"][0].update(args={}), "$.linux.seccomp.syscalls[0].args"),
        (
            lambda s: s["syscalls"][0].update(args=[{"index": 0, "value": 1}]),
            "$.linux.seccomp.syscalls[0].args[0]",
        ),
        (
            lambda s: s["syscalls"][0].update(args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]),
            "$.linux.seccomp.syscalls[0].args[0].index",
        ),
        (
            lambda s: s["syscalls"][0].update(
                args=[{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]
            ),
            "$.linux.seccomp.syscalls[0].args[0].value",
        ),
        (
            lambda s: s["syscalls"][0].update(
                args=[{"index": True, "value": 1, "op": "SCMP_CMP_EQ"}]
            ),
            "$.linux.seccomp.syscalls[0].args[0].index",
        ),
        (
            lambda s: s["syscalls"][0].update(
                args=[{"index": 0, "value": 1, "valueTwo": 1 << 64, "op": "SCMP_CMP_MASKED_EQ"}]
            ),
            "$.linux.seccomp.syscalls[0].args[0].valueTwo",
        ),
        (
            lambda s: s["syscalls"][0].update(
                args=[{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]
            ),
            "$.linux.seccomp.syscalls[0].args[0].op",
        ),
    ],
)
def test_plan_errors_name_the_json_path(change: Any, where: str) -> None:
    spec = mkdir_spec()
    change(spec)
    with pytest.raises(ConfigError) as info:
        seccomp.plan(spec)
    assert info.value.where == where


def test_unhashable_entries_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        seccomp.plan(mkdir_spec(architectures=[["SCMP_ARCH_X86_64"]]))
    assert info.value.where == "$.linux.seccomp.architectures[0]"
    with pytest.raises(ConfigError) as info:
        seccomp.plan(mkdir_spec(flags=[{}]))
    assert info.value.where == "$.linux.seccomp.flags[0]"
    with pytest.raises(ConfigError) as info:
        seccomp.plan(mkdir_spec(defaultAction=["SCMP_ACT_ALLOW"]))
    assert info.value.where == "$.linux.seccomp.defaultAction"


def test_where_prefix_is_the_callers() -> None:
    with pytest.raises(ConfigError) as info:
        seccomp.plan({"defaultAction": "nope"}, where="$.x.seccomp")
    assert info.value.where == "$.x.seccomp.defaultAction"


def test_notify_is_refused_clearly() -> None:
    with pytest.raises(ConfigError, match="SCMP_ACT_NOTIFY"):
        seccomp.plan({"defaultAction": "SCMP_ACT_NOTIFY"})


def test_wanted_follows_runc() -> None:
    assert not seccomp.wanted(None)
    assert not seccomp.wanted({})
    assert not seccomp.wanted({"syscalls": []})
    assert seccomp.wanted({"defaultAction": "SCMP_ACT_ALLOW"})
    assert seccomp.wanted({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})


# --- compiled BPF ---


@needs_libseccomp
def test_bpf_carries_the_errno_and_the_syscall_number() -> None:
    bpf = seccomp.compile(mkdir_spec(13)).bpf()
    assert seccomp.ACT_ERRNO | 13 in returns(bpf)
    assert seccomp.ACT_ALLOW in returns(bpf)
    assert NR_MKDIR in compared(bpf)


@needs_libseccomp
def test_bpf_changes_with_the_spec() -> None:
    base = seccomp.compile(mkdir_spec(13)).bpf()
    assert seccomp.compile(mkdir_spec(13)).bpf() == base  # deterministic
    other_errno = seccomp.compile(mkdir_spec(17)).bpf()
    assert other_errno != base
    assert seccomp.ACT_ERRNO | 17 in returns(other_errno)
    assert seccomp.ACT_ERRNO | 13 not in returns(other_errno)
    default_errno = seccomp.compile(mkdir_spec(None)).bpf()
    assert seccomp.ACT_ERRNO | errno.EPERM in returns(default_errno)
    spec = mkdir_spec(13)
    spec["syscalls"].append({"names": ["rmdir"], "action": "SCMP_ACT_KILL_PROCESS"})
    more = seccomp.compile(spec).bpf()
    assert len(more) > len(base)
    assert seccomp.ACT_KILL_PROCESS in returns(more)
    denied = seccomp.compile(dict(mkdir_spec(13), defaultAction="SCMP_ACT_KILL")).bpf()
    assert seccomp.ACT_KILL_THREAD in returns(denied)
    assert seccomp.ACT_ALLOW not in returns(denied)


@needs_libseccomp
def test_unknown_syscalls_are_skipped_like_runc() -> None:
    spec = mkdir_spec(13)
    spec["syscalls"][0]["names"] = ["mkdir", "no_such_syscall_xyz"]
    f = seccomp.compile(spec)
    assert f.skipped == ("no_such_syscall_xyz",)
    assert f.bpf() == seccomp.compile(mkdir_spec(13)).bpf()


@needs_libseccomp
def test_rule_equal_to_the_default_is_skipped() -> None:
    spec = mkdir_spec(13)
    spec["syscalls"].append({"names": ["rmdir"], "action": "SCMP_ACT_ALLOW"})
    assert seccomp.compile(spec).bpf() == seccomp.compile(mkdir_spec(13)).bpf()


@needs_libseccomp
def test_argument_conditions_reach_the_bpf() -> None:
    spec: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 0x0400000, "op": "SCMP_CMP_EQ"}],
            }
        ],
    }
    bpf = seccomp.compile(spec).bpf()
    assert NR_PERSONALITY in compared(bpf)
    assert 0x0400000 in compared(bpf)
    spec2 = copy.deepcopy(spec)
    spec2["syscalls"][0]["args"][0]["value"] = 0x0800000
    bpf2 = seccomp.compile(spec2).bpf()
    assert 0x0800000 in compared(bpf2) and 0x0400000 not in compared(bpf2)


@needs_libseccomp
def test_same_index_twice_becomes_two_rules() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 0, "value": 0x0400000, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 0x0800000, "op": "SCMP_CMP_EQ"},
                ],
            }
        ],
    }
    bpf = seccomp.compile(spec).bpf()
    assert {0x0400000, 0x0800000} <= compared(bpf)


@needs_libseccomp
def test_architectures_add_their_checks() -> None:
    native = seccomp.compile(mkdir_spec(13)).bpf()
    multi = seccomp.compile(
        mkdir_spec(13, architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    ).bpf()
    assert len(multi) > len(native)
    audit_arch_i386 = 0x40000003
    assert audit_arch_i386 in compared(multi)
    assert audit_arch_i386 not in compared(native)


@needs_libseccomp
def test_flags_are_accepted_and_kept() -> None:
    flags = list(seccomp.FLAGS)
    f = seccomp.compile(mkdir_spec(13, flags=flags))
    assert f.plan.flags == tuple(flags)
    assert f.bpf() == seccomp.compile(mkdir_spec(13)).bpf()  # flags are load-time, not BPF


@needs_libseccomp
def test_libseccomp_version_is_reported() -> None:
    major, minor, _ = seccomp.libseccomp_version()
    assert (major, minor) >= (2, 5)


def test_public_lists_for_features() -> None:
    assert "SCMP_ACT_NOTIFY" not in seccomp.ACTIONS
    assert {"SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_LOG"} <= set(seccomp.ACTIONS)
    assert len(seccomp.OPERATORS) == 7


@needs_libseccomp
def test_supported_architectures_are_those_libseccomp_resolves() -> None:
    archs = seccomp.supported_architectures()
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"} <= set(archs)
    assert set(archs) <= seccomp.ARCHITECTURES


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "str", "none", "bool", "neg"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, 1, 5, 6, 13, 65535, 65536, 1 << 63, 1 << 64])
    if kind == "neg":
        return -rng.randint(1, 10)
    if kind == "str":
        return rng.choice(
            ["SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW", "SCMP_CMP_EQ", "mkdir", "SCMP_ARCH_X86", "x", ""]
        )
    if kind == "none":
        return None
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = [
        "defaultAction",
        "defaultErrnoRet",
        "architectures",
        "flags",
        "syscalls",
        "names",
        "action",
        "errnoRet",
        "args",
        "index",
        "value",
        "valueTwo",
        "op",
    ]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_any_bad_input_is_a_config_error() -> None:
    rng = random.Random(20261125)
    for _ in range(3000):
        spec = _random_json(rng)
        if isinstance(spec, dict):
            spec.setdefault("defaultAction", rng.choice(["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", 3]))
            if rng.random() < 0.7:
                spec["syscalls"] = [_random_json(rng, 1) for _ in range(rng.randint(0, 3))]
        try:
            seccomp.plan(spec)
        except ConfigError as e:
            assert e.where.startswith("$.linux.seccomp")
