"""Device rules → the state the kernel must end in, as runc computes it.

runc does not write the spec's device rules one by one: it replays them on an emulator
of the v1 devices controller that starts as "deny everything" (a whitelist), and then
moves the cgroup to that final state. So a bundle without any device rule still gets
"deny all, allow runc's defaults", and `[allow all, deny c 1:3 w]` followed by the
default `allow c 1:3 rwm` ends as "allow all". lowrun does the same:

- v1: the transition is written to devices.deny / devices.allow (a reset with `a`
  when the mode changes, else only the exceptions that differ);
- v2: the same final state is compiled into a BPF_PROG_TYPE_CGROUP_DEVICE program
  (`compile_program`), which `ebpf.py` loads and attaches.
"""

from __future__ import annotations

import struct

from lowrun.cgroups.resources import DeviceRule

Key = tuple[str, int | None, int | None]


class DeviceState:
    """The v1 controller's model: a default, and exceptions with the opposite effect."""

    def __init__(self, default_allow: bool = False) -> None:
        self.default_allow = default_allow
        self.exceptions: dict[Key, set[str]] = {}

    def apply(self, rule: DeviceRule) -> None:
        if rule.type == "a":
            # The kernel ignores the rest of an "a" line: it resets the mode.
            self.default_allow = rule.allow
            self.exceptions.clear()
            return
        key: Key = (rule.type, rule.major, rule.minor)
        if rule.allow == self.default_allow:
            remaining = self.exceptions.get(key, set()) - set(rule.access)
            if remaining:
                self.exceptions[key] = remaining
            else:
                self.exceptions.pop(key, None)
        else:
            self.exceptions.setdefault(key, set()).update(rule.access)

    def lines(self) -> list[str]:
        """The exceptions as devices.list lines, in a stable order."""
        return sorted(_line(key, access) for key, access in self.exceptions.items())

    @classmethod
    def from_list(cls, text: str) -> DeviceState:
        """Read devices.list: `a *:* rwm` alone means allow-all (its deny list is hidden)."""
        lines = [line.split() for line in text.splitlines() if line.strip()]
        if any(parts[0] == "a" for parts in lines):
            return cls(default_allow=True)
        state = cls(default_allow=False)
        for dtype, numbers, access in lines:
            major, _, minor = numbers.partition(":")
            key: Key = (
                dtype,
                None if major == "*" else int(major),
                None if minor == "*" else int(minor),
            )
            state.exceptions[key] = set(access)
        return state


def _line(key: Key, access: set[str]) -> str:
    dtype, major, minor = key
    ma = "*" if major is None else str(major)
    mi = "*" if minor is None else str(minor)
    return f"{dtype} {ma}:{mi} {''.join(c for c in 'rwm' if c in access)}"


def final_state(rules: list[DeviceRule]) -> DeviceState:
    """Replay `rules` on a deny-all start, as runc's emulator does."""
    state = DeviceState(default_allow=False)
    for rule in rules:
        state.apply(rule)
    return state


def v1_transition(current: DeviceState, target: DeviceState) -> list[tuple[str, str]]:
    """(file, line) writes that take a v1 cgroup from `current` to `target`."""
    allow_file, deny_file = "devices.allow", "devices.deny"
    if current.default_allow or target.default_allow != current.default_allow:
        reset = allow_file if target.default_allow else deny_file
        add = deny_file if target.default_allow else allow_file
        return [(reset, "a *:* rwm")] + [
            (add, _line(key, access))
            for key, access in sorted(target.exceptions.items(), key=_order)
        ]
    writes = []
    for key, access in sorted(current.exceptions.items(), key=_order):
        gone = access - target.exceptions.get(key, set())
        if gone:
            writes.append((deny_file, _line(key, gone)))
    for key, access in sorted(target.exceptions.items(), key=_order):
        new = access - current.exceptions.get(key, set())
        if new:
            writes.append((allow_file, _line(key, new)))
    return writes


def _order(item: tuple[Key, set[str]]) -> tuple[str, int, int]:
    (dtype, major, minor), _ = item
    return (dtype, -1 if major is None else major, -1 if minor is None else minor)


# -- eBPF (cgroup v2) ------------------------------------------------------------------
# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
# access_type = (access << 16) | type; type: 1 block, 2 char; access: 1 mknod, 2 read, 4 write
DEV_BLOCK = 1
DEV_CHAR = 2
ACCESS_BITS = {"m": 1, "r": 2, "w": 4}

# eBPF opcodes (linux/bpf.h, linux/bpf_common.h)
LDX_MEM_W = 0x61  # dst = *(u32 *)(src + off)
ALU64_AND_K = 0x57
ALU64_RSH_K = 0x77
ALU64_MOV_K = 0xB7
ALU64_MOV_X = 0xBF
JMP_JEQ_K = 0x15
JMP_JNE_K = 0x55
JMP_EXIT = 0x95


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _bits(access: set[str]) -> int:
    return sum(ACCESS_BITS[c] for c in access)


def compile_program(state: DeviceState) -> bytes:
    """A device-cgroup program returning 1 (allow) or 0 (deny) for `state`.

    r2 = type, r3 = access, r4 = major, r5 = minor; one block per exception (an allow
    exception needs every requested access bit, a deny exception any of them), then
    the default.
    """
    code = [
        insn(LDX_MEM_W, dst=2, src=1, off=0),
        insn(ALU64_AND_K, dst=2, imm=0xFFFF),
        insn(LDX_MEM_W, dst=3, src=1, off=0),
        insn(ALU64_RSH_K, dst=3, imm=16),
        insn(LDX_MEM_W, dst=4, src=1, off=4),
        insn(LDX_MEM_W, dst=5, src=1, off=8),
    ]
    result = 0 if state.default_allow else 1
    for (dtype, major, minor), access in sorted(state.exceptions.items(), key=_order):
        # One instruction per item; a test (opcode, register, immediate) jumps past the
        # rest of the block when the request does not match the exception.
        bits = _bits(access)
        block: list[bytes | tuple[int, int, int]] = []
        if dtype != "a":
            block.append((JMP_JNE_K, 2, DEV_BLOCK if dtype == "b" else DEV_CHAR))
        block.append(insn(ALU64_MOV_X, dst=1, src=3))
        if result == 1:
            block.append(insn(ALU64_AND_K, dst=1, imm=~bits & 0x7))
            block.append((JMP_JNE_K, 1, 0))  # asks for something not allowed
        else:
            block.append(insn(ALU64_AND_K, dst=1, imm=bits))
            block.append((JMP_JEQ_K, 1, 0))  # asks for nothing that is denied
        if major is not None:
            block.append((JMP_JNE_K, 4, major))
        if minor is not None:
            block.append((JMP_JNE_K, 5, minor))
        block += [insn(ALU64_MOV_K, dst=0, imm=result), insn(JMP_EXIT)]
        n = len(block)
        for i, item in enumerate(block):
            if isinstance(item, tuple):
                opcode, reg, imm = item
                code.append(insn(opcode, dst=reg, off=n - i - 1, imm=imm))
            else:
                code.append(item)
    code += [insn(ALU64_MOV_K, dst=0, imm=1 if state.default_allow else 0), insn(JMP_EXIT)]
    return b"".join(code)
