"""`linux.seccomp` compiled to a BPF filter through libseccomp, loaded by the container's init.

Two steps, so that the init can fail at `create` time and keep the late window short:
`compile(spec)` validates the spec (every error is a `ConfigError` with its JSON path) and
has libseccomp generate the BPF program; `SeccompFilter.load()` is a single seccomp(2)
call made late, right before exec when `noNewPrivileges` is set (docs/security.md has
the order).

Semantics follow runc 1.1, the runtime the specs are written against:
- a syscall name libseccomp cannot resolve is skipped (a profile may name newer calls);
- a rule whose action equals the default action is skipped (libseccomp refuses it);
- several conditions on the same argument index become one rule per condition (OR),
  conditions on distinct indexes one rule (AND);
- `SCMP_ACT_ERRNO`/`SCMP_ACT_TRACE` without `errnoRet` return EPERM; `errnoRet` on other
  actions is ignored;
- unless the default action allows or logs, a prologue makes every syscall newer than
  the newest one the profile names fail with ENOSYS (`enosys_stub`), as runc's patchbpf;
- no_new_privs is never set behind the spec's back: `noNewPrivileges` decides, so loading
  without it needs CAP_SYS_ADMIN.
`SCMP_ACT_NOTIFY` needs a seccomp agent at `listenerPath`; lowrun refuses it clearly.

libseccomp is loaded with ctypes only when a spec has seccomp, so `lowrun` stays lean.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from lowrun import log, syscalls
from lowrun.errors import ConfigError, LowrunError, SyscallError

# libseccomp actions (seccomp.h). ERRNO and TRACE carry 16 bits of data.
ACT_KILL_THREAD = 0x00000000
ACT_KILL_PROCESS = 0x80000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000
ACT_NOTIFY = 0x7FC00000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000

_ACTIONS = {
    "SCMP_ACT_KILL": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": ACT_TRAP,
    "SCMP_ACT_ERRNO": ACT_ERRNO,
    "SCMP_ACT_TRACE": ACT_TRACE,
    "SCMP_ACT_ALLOW": ACT_ALLOW,
    "SCMP_ACT_LOG": ACT_LOG,
    "SCMP_ACT_NOTIFY": ACT_NOTIFY,
}
_WITH_DATA = (ACT_ERRNO, ACT_TRACE)
ACTIONS = tuple(name for name, value in _ACTIONS.items() if value != ACT_NOTIFY)
"""The actions lowrun supports (for `lowrun features`); SCMP_ACT_NOTIFY is refused."""

# enum scmp_compare
_OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
OPERATORS = tuple(_OPS)

# enum scmp_filter_attr
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_API_SYSRAWRC = 9

FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
}
_KERNEL_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}

# OCI architecture names; libseccomp's name is the lower-case suffix.
_ARCH_SUFFIXES = (
    "X86 X86_64 X32 ARM AARCH64 MIPS MIPS64 MIPS64N32 MIPSEL MIPSEL64 MIPSEL64N32 "
    "PPC PPC64 PPC64LE S390 S390X PARISC PARISC64 RISCV64 LOONGARCH64"
)
ARCHITECTURES = frozenset("SCMP_ARCH_" + a for a in _ARCH_SUFFIXES.split())

_NR_SCMP_ERROR = -1
_MAX_U64 = (1 << 64) - 1


class Condition(NamedTuple):
    arg: int
    op: int
    value: int
    value_two: int


class Rule(NamedTuple):
    """One syscall entry of the spec, expanded to one name; `where` is its JSON path."""

    name: str
    action: int
    conditions: tuple[Condition, ...]
    where: str


class FilterPlan(NamedTuple):
    """The validated spec: what `compile` hands to libseccomp."""

    default_action: int
    architectures: tuple[str, ...]
    flags: tuple[str, ...]
    rules: tuple[Rule, ...]


def wanted(spec: Mapping[str, Any] | None) -> bool:
    """False when the spec asks for no filter (absent, or no defaultAction and no syscalls),
    which runc treats as seccomp disabled."""
    if spec is None:
        return False
    return bool(spec.get("defaultAction")) or bool(spec.get("syscalls"))


def _uint(value: Any, where: str, limit: int = _MAX_U64) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ConfigError(where, f"must be an integer from 0 to {limit}, not {value!r}")
    return value


def _action(name: Any, errno_ret: Any, where: str, errno_where: str) -> int:
    if not isinstance(name, str) or name not in _ACTIONS:
        raise ConfigError(where, f"unknown seccomp action {name!r} (known: {', '.join(_ACTIONS)})")
    action = _ACTIONS[name]
    if action == ACT_NOTIFY:
        raise ConfigError(
            where, "SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath), not supported by lowrun"
        )
    if action in _WITH_DATA:
        data = errno.EPERM if errno_ret is None else _uint(errno_ret, errno_where, 0xFFFF)
        return action | data
    return action


def _conditions(args: Any, where: str) -> tuple[Condition, ...]:
    if args is None:
        return ()
    if not isinstance(args, list):
        raise ConfigError(where, "must be an array of argument conditions")
    result = []
    for i, arg in enumerate(args):
        at = f"{where}[{i}]"
        if not isinstance(arg, Mapping):
            raise ConfigError(at, "must be an object with index, value, op")
        for key in ("index", "value", "op"):
            if key not in arg:
                raise ConfigError(at, f"missing {key!r}")
        op = arg["op"]
        if not isinstance(op, str) or op not in _OPS:
            raise ConfigError(f"{at}.op", f"unknown operator {op!r} (known: {', '.join(_OPS)})")
        result.append(
            Condition(
                arg=_uint(arg["index"], f"{at}.index", 5),
                op=_OPS[op],
                value=_uint(arg["value"], f"{at}.value"),
                value_two=_uint(arg.get("valueTwo", 0), f"{at}.valueTwo"),
            )
        )
    return tuple(result)


def _rules(syscalls: Any, where: str) -> tuple[Rule, ...]:
    if syscalls is None:
        return ()
    if not isinstance(syscalls, list):
        raise ConfigError(where, "must be an array")
    rules: list[Rule] = []
    for i, entry in enumerate(syscalls):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(at, "must be an object with names and action")
        names = entry.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"{at}.names", "must be an array of syscall names")
        if "action" not in entry:
            raise ConfigError(f"{at}.action", "missing")
        action = _action(entry["action"], entry.get("errnoRet"), f"{at}.action", f"{at}.errnoRet")
        conditions = _conditions(entry.get("args"), f"{at}.args")
        rules.extend(Rule(name, action, conditions, at) for name in names)
    return tuple(rules)


def plan(spec: Mapping[str, Any], where: str = "$.linux.seccomp") -> FilterPlan:
    """Validate `linux.seccomp` without touching libseccomp."""
    if not isinstance(spec, Mapping):
        raise ConfigError(where, "must be an object")
    if "defaultAction" not in spec:
        raise ConfigError(f"{where}.defaultAction", "missing")
    default = _action(
        spec["defaultAction"],
        spec.get("defaultErrnoRet"),
        f"{where}.defaultAction",
        f"{where}.defaultErrnoRet",
    )
    arches = spec.get("architectures") or []
    if not isinstance(arches, list):
        raise ConfigError(f"{where}.architectures", "must be an array")
    for i, arch in enumerate(arches):
        if not isinstance(arch, str) or arch not in ARCHITECTURES:
            raise ConfigError(f"{where}.architectures[{i}]", f"unknown architecture {arch!r}")
    flags = spec.get("flags") or []
    if not isinstance(flags, list):
        raise ConfigError(f"{where}.flags", "must be an array")
    for i, flag in enumerate(flags):
        if not isinstance(flag, str) or flag not in FLAGS:
            raise ConfigError(
                f"{where}.flags[{i}]", f"unknown flag {flag!r} (known: {', '.join(FLAGS)})"
            )
    if spec.get("listenerPath"):
        log.warning("%s.listenerPath: ignored, SCMP_ACT_NOTIFY is not supported", where)
    return FilterPlan(
        default_action=default,
        architectures=tuple(arches),
        flags=tuple(flags),
        rules=_rules(spec.get("syscalls"), f"{where}.syscalls"),
    )


# --- libseccomp through ctypes, loaded on first use ---


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lib: ctypes.CDLL | None = None


def _libseccomp() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as e:
        raise LowrunError(f"seccomp requested but libseccomp.so.2 cannot be loaded: {e}") from e
    ctx = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_init.restype = ctx
    lib.seccomp_release.argtypes = [ctx]
    lib.seccomp_release.restype = None
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_add.argtypes = [ctx, ctypes.c_uint32]
    lib.seccomp_attr_set.argtypes = [ctx, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
    lib.seccomp_arch_native.argtypes = []
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_rule_add_array.argtypes = [
        ctx,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_export_bpf.argtypes = [ctx, ctypes.c_int]
    lib.seccomp_version.argtypes = []
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    _lib = lib
    return lib


def available() -> bool:
    """libseccomp loads and the kernel has seccomp filters."""
    try:
        _libseccomp()
    except LowrunError:
        return False
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return any(line.startswith("Seccomp:") for line in f)
    except OSError:
        return False


def supported_architectures() -> list[str]:
    """The OCI architecture names this libseccomp can build filters for."""
    lib = _libseccomp()
    return sorted(
        a
        for a in ARCHITECTURES
        if lib.seccomp_arch_resolve_name(a.removeprefix("SCMP_ARCH_").lower().encode()) != 0
    )


def libseccomp_version() -> tuple[int, int, int]:
    v = _libseccomp().seccomp_version().contents
    return (v.major, v.minor, v.micro)


class SeccompFilter:
    """A compiled filter: the BPF program to load, with what libseccomp skipped.

    `program` is libseccomp's program behind lowrun's ENOSYS prologue (see `enosys_stub`);
    `skipped` names the syscalls libseccomp did not know (ignored, as runc does).
    """

    def __init__(self, plan: FilterPlan, skipped: tuple[str, ...], program: bytes) -> None:
        self.plan = plan
        self.skipped = skipped
        self.program = program

    def __repr__(self) -> str:
        return f"SeccompFilter({len(self.program) // 8} instructions, skipped={self.skipped!r})"

    @property
    def flags(self) -> int:
        """The seccomp(2) flags the spec asked for."""
        result = 0
        for flag in self.plan.flags:
            result |= _KERNEL_FLAGS[flag]
        return result

    def load(self) -> None:
        """Install the filter: it applies to this thread and everything it execs from now on.

        One system call, no allocation by libseccomp: this runs late, right before exec.
        Without no_new_privs the kernel requires CAP_SYS_ADMIN (EACCES otherwise).
        """
        syscalls.seccomp_set_mode_filter(self.program, self.flags)

    def bpf(self) -> bytes:
        """The BPF program `load` installs (struct sock_filter array), for tests and debugging."""
        return self.program


# --- runc's ENOSYS prologue ---

AUDIT_ARCH_X86_64 = 0xC000003E
SCMP_ARCH_X32 = 0x4000003E  # libseccomp's token; the kernel reports x32 calls as x86_64
X32_SYSCALL_BIT = 0x40000000

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGT_K = 0x25
_JSET_K = 0x45
_JA = 0x05
_RET_K = 0x06
_OFFSET_NR = 0
_OFFSET_ARCH = 4

# (code, jt, jf, k); jt, jf (and k of a JA) may name a label instead of an offset.
_Insn = tuple[int, int | str, int | str, int | str]


def enosys_stub(last: Mapping[int, int]) -> bytes:
    """A BPF prologue that fails with ENOSYS every syscall newer than the profile knows.

    `last` maps a libseccomp architecture token to the highest syscall number the profile
    names for it. A program built for an older kernel then answers ENOSYS, not its default
    errno, to calls it never heard of, so that libcs fall back to older calls: runc does
    the same. Every other call, and other architectures, go on to libseccomp's program,
    which must directly follow this prologue.
    """
    arches = sorted({AUDIT_ARCH_X86_64 if t == SCMP_ARCH_X32 else t for t in last})
    if not arches:
        return b""
    code: list[_Insn | str] = [(_LD_W_ABS, 0, 0, _OFFSET_ARCH)]
    for i, arch in enumerate(arches):
        following = f"arch{i + 1}" if i + 1 < len(arches) else "orig"
        code += [f"arch{i}", (_JEQ_K, 0, following, arch), (_LD_W_ABS, 0, 0, _OFFSET_NR)]
        if arch == AUDIT_ARCH_X86_64:
            x32 = last.get(SCMP_ARCH_X32)
            code.append((_JSET_K, "x32" if x32 is not None else "orig", 0, X32_SYSCALL_BIT))
            code.append(_compare(last.get(AUDIT_ARCH_X86_64)))
            if x32 is not None:
                code += ["x32", _compare(x32)]
        else:
            code.append(_compare(last[arch]))
    code += ["enosys", (_RET_K, 0, 0, ACT_ERRNO | errno.ENOSYS), "orig"]
    return _assemble(code)


def _compare(last_nr: int | None) -> _Insn:
    if last_nr is None:
        return (_JA, 0, 0, "orig")
    return (_JGT_K, "enosys", "orig", last_nr)


def _assemble(code: Sequence[_Insn | str]) -> bytes:
    """Resolve labels (strings in the list) to forward jump offsets and encode."""
    labels: dict[str, int] = {}
    insns: list[_Insn] = []
    for item in code:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)

    def offset(pc: int, ref: int | str) -> int:
        if isinstance(ref, int):
            return ref
        jump = labels[ref] - pc - 1
        if not 0 <= jump <= 255:
            raise AssertionError(f"BPF jump from {pc} to {ref} out of range")
        return jump

    out = []
    for pc, (op, jt, jf, k) in enumerate(insns):
        if op == _JA:
            out.append(struct.pack("=HBBI", op, 0, 0, offset(pc, k)))
        else:
            assert isinstance(k, int)
            out.append(struct.pack("=HBBI", op, offset(pc, jt), offset(pc, jf), k))
    return b"".join(out)


def _add_rule(lib: ctypes.CDLL, ctx: int, nr: int, rule: Rule, conds: Sequence[Condition]) -> None:
    array = (_ArgCmp * max(len(conds), 1))()
    for slot, c in zip(array, conds, strict=False):
        slot.arg, slot.op, slot.datum_a, slot.datum_b = c.arg, c.op, c.value, c.value_two
    rc = lib.seccomp_rule_add_array(ctx, rule.action, nr, len(conds), array)
    if rc < 0:
        raise ConfigError(
            rule.where, f"libseccomp refused the rule for {rule.name!r}: {os.strerror(-rc)}"
        )


def _build(
    lib: ctypes.CDLL, ctx: int, p: FilterPlan, where: str
) -> tuple[tuple[str, ...], list[int]]:
    rc = lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0)
    if rc < 0:
        raise SyscallError(-rc, "seccomp_attr_set", "NO_NEW_PRIVS")
    # The kernel's errno from seccomp_load (EACCES, EINVAL) rather than libseccomp's ECANCELED;
    # libseccomp before 2.5 lacks the attribute and keeps ECANCELED.
    lib.seccomp_attr_set(ctx, _ATTR_API_SYSRAWRC, 1)
    for i, flag in enumerate(p.flags):
        rc = lib.seccomp_attr_set(ctx, FLAGS[flag], 1)
        if rc < 0:
            raise ConfigError(f"{where}.flags[{i}]", f"{flag} not supported: {os.strerror(-rc)}")
    tokens = [lib.seccomp_arch_native()]
    for i, arch in enumerate(p.architectures):
        token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
        if token == 0:
            raise ConfigError(f"{where}.architectures[{i}]", f"{arch} unknown to libseccomp")
        rc = lib.seccomp_arch_add(ctx, token)
        if rc < 0 and rc != -errno.EEXIST:
            raise ConfigError(f"{where}.architectures[{i}]", f"{arch}: {os.strerror(-rc)}")
        if token not in tokens:
            tokens.append(token)
    skipped: list[str] = []
    for rule in p.rules:
        if rule.action == p.default_action:
            continue
        nr = lib.seccomp_syscall_resolve_name(rule.name.encode())
        if nr == _NR_SCMP_ERROR:
            if rule.name not in skipped:
                skipped.append(rule.name)
            continue
        indexes = [c.arg for c in rule.conditions]
        if len(set(indexes)) < len(indexes):
            for c in rule.conditions:
                _add_rule(lib, ctx, nr, rule, [c])
        else:
            _add_rule(lib, ctx, nr, rule, rule.conditions)
    if skipped:
        log.debug("seccomp: syscalls unknown to libseccomp ignored: %s", ", ".join(skipped))
    return tuple(skipped), tokens


def compile(spec: Mapping[str, Any], where: str = "$.linux.seccomp") -> SeccompFilter:
    """Validate `spec` and compile it to a BPF program with libseccomp (nothing is loaded)."""
    p = plan(spec, where)
    lib = _libseccomp()
    ctx = lib.seccomp_init(p.default_action)
    if not ctx:
        raise ConfigError(
            f"{where}.defaultAction", "libseccomp refused the default action on this kernel"
        )
    try:
        skipped, tokens = _build(lib, ctx, p, where)
        program = _export(lib, ctx)
        if p.default_action not in (ACT_ALLOW, ACT_LOG):
            program = enosys_stub(_last_syscalls(lib, tokens, p.rules)) + program
    finally:
        lib.seccomp_release(ctx)
    return SeccompFilter(p, skipped, program)


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    fd = os.memfd_create("lowrun-seccomp-bpf", os.MFD_CLOEXEC)
    try:
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc < 0:
            raise SyscallError(-rc, "seccomp_export_bpf")
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _last_syscalls(
    lib: ctypes.CDLL, tokens: Sequence[int], rules: Sequence[Rule]
) -> dict[int, int]:
    """For each architecture, the highest syscall number any rule names (as runc computes)."""
    last: dict[int, int] = {}
    names = {r.name for r in rules}
    for token in tokens:
        numbers = [lib.seccomp_syscall_resolve_name_arch(token, n.encode()) for n in names]
        known = [n for n in numbers if n >= 0]
        if known:
            last[token] = max(known)
    return last
