"""Capability names, parsing with JSON paths, and the order of calls (with a fake facade)."""

from __future__ import annotations

import errno
import random
from pathlib import Path
from typing import Any

import pytest

from lowrun import capabilities as caps
from lowrun import log
from lowrun.errors import ConfigError, SyscallError


def test_names_follow_the_kernel_numbering() -> None:
    assert caps.NAMES["CAP_CHOWN"] == 0
    assert caps.NAMES["CAP_KILL"] == 5
    assert caps.NAMES["CAP_NET_BIND_SERVICE"] == 10
    assert caps.NAMES["CAP_SYS_ADMIN"] == 21
    assert caps.NAMES["CAP_AUDIT_WRITE"] == 29
    assert caps.BY_NUMBER[21] == "CAP_SYS_ADMIN"
    # Dense from 0 to the kernel's last capability, no gaps, no duplicates.
    assert sorted(caps.NAMES.values()) == list(range(len(caps.NAMES)))


def test_names_stop_at_the_kernels_last_cap() -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    assert last == caps.LAST_CAP
    assert max(caps.NAMES.values()) == min(last, 40)


def test_read_last_cap_from_a_file_and_fallback(tmp_path: Path) -> None:
    f = tmp_path / "cap_last_cap"
    f.write_text("37\n")
    assert caps._read_last_cap(str(f)) == 37
    assert caps._read_last_cap(str(tmp_path / "missing")) == 40
    f.write_text("garbage")
    assert caps._read_last_cap(str(f)) == 40


def test_parse_none_means_no_capabilities() -> None:
    sets = caps.parse(None)
    for name in caps.SET_NAMES:
        assert getattr(sets, name) == frozenset()


def test_parse_the_five_sets() -> None:
    spec = {
        "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"],
    }
    sets = caps.parse(spec)
    assert sets.bounding == {0, 5, 10}
    assert sets.effective == {5, 10}
    assert sets.permitted == {5, 10}
    assert sets.inheritable == {10}
    assert sets.ambient == {10}
    assert sets.unknown == ()
    assert sets.names("bounding") == ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def test_missing_set_is_empty() -> None:
    sets = caps.parse({"bounding": ["CAP_KILL"]})
    assert sets.bounding == {5}
    assert sets.effective == sets.permitted == sets.inheritable == sets.ambient == frozenset()


def test_unknown_names_are_ignored_with_a_warning_like_runc(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sets = caps.parse({"bounding": ["CAP_KILL", "CAP_BOGUS"], "permitted": ["CAP_BOGUS"]})
    assert sets.bounding == {5}
    assert sets.permitted == frozenset()
    assert sets.unknown == ("CAP_BOGUS",)
    assert "CAP_BOGUS" in capsys.readouterr().err


def test_names_are_case_sensitive_as_in_runc() -> None:
    sets = caps.parse({"bounding": ["cap_kill", "KILL"]})
    assert sets.bounding == frozenset()
    assert sets.unknown == ("cap_kill", "KILL")


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        (["CAP_KILL"], "$.process.capabilities"),
        ({"bounding": "CAP_KILL"}, "$.process.capabilities.bounding"),
        ({"ambient": {"CAP_KILL": True}}, "$.process.capabilities.ambient"),
        ({"effective": ["CAP_KILL", 5]}, "$.process.capabilities.effective[1]"),
        ({"inheritable": [None]}, "$.process.capabilities.inheritable[0]"),
    ],
)
def test_bad_shapes_raise_config_error_with_the_path(spec: Any, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        caps.parse(spec)
    assert info.value.where == where
    assert str(info.value).startswith(where + ":")


def test_effective_outside_permitted_is_refused_at_parse() -> None:
    spec = {"effective": ["CAP_KILL", "CAP_SETUID"], "permitted": ["CAP_KILL"]}
    with pytest.raises(ConfigError) as info:
        caps.parse(spec, where="$.process.capabilities")
    assert info.value.where == "$.process.capabilities.effective"
    assert "CAP_SETUID" in info.value.problem


def test_where_prefix_is_the_callers() -> None:
    with pytest.raises(ConfigError) as info:
        caps.parse({"bounding": [1]}, where="$.processes[2].capabilities")
    assert info.value.where == "$.processes[2].capabilities.bounding[0]"


def test_unknown_set_key_is_only_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    sets = caps.parse({"ambiant": ["CAP_KILL"]})
    assert sets.ambient == frozenset()
    assert "ambiant" in capsys.readouterr().err


def test_mask_and_numbers_round_trip() -> None:
    assert caps.mask({0, 5}) == 0x21
    assert caps.mask(set()) == 0
    assert caps.numbers_of(0x21) == {0, 5}
    assert caps.numbers_of(caps.mask({40, 1, 33})) == {40, 1, 33}


class FakeSyscalls:
    """Records the calls the capabilities module makes; holds a bounding set to read."""

    PR_CAPBSET_READ = 23
    PR_CAPBSET_DROP = 24
    PR_CAP_AMBIENT = 47
    PR_CAP_AMBIENT_RAISE = 2
    PR_CAP_AMBIENT_CLEAR_ALL = 4
    PR_CAP_AMBIENT_IS_SET = 1

    def __init__(self, bounding: set[int], refuse_ambient: dict[int, int] | None = None) -> None:
        self.bounding = set(bounding)
        self.refuse_ambient = refuse_ambient or {}
        self.calls: list[tuple[Any, ...]] = []
        self.refuse_capset = False

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0) -> int:
        self.calls.append(("prctl", option, arg2, arg3))
        if option == self.PR_CAPBSET_READ:
            return 1 if arg2 in self.bounding else 0
        if option == self.PR_CAPBSET_DROP:
            self.bounding.discard(arg2)
        if option == self.PR_CAP_AMBIENT and arg2 == self.PR_CAP_AMBIENT_RAISE:
            err = self.refuse_ambient.get(arg3)
            if err:
                raise SyscallError(err, "prctl", "ambient")
        return 0

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        self.calls.append(("capset", effective, permitted, inheritable))
        if self.refuse_capset:
            raise SyscallError(errno.EPERM, "capset", "")

    def set_keepcaps(self, keep: bool) -> None:
        self.calls.append(("keepcaps", keep))


def test_drop_bounding_drops_only_what_is_present_and_unwanted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeSyscalls(bounding={0, 1, 5, 21, 24})
    monkeypatch.setattr(caps, "syscalls", fake)
    caps.drop_bounding(caps.CapabilitySets(bounding=frozenset({5, 24})), last_cap=30)
    dropped = [c[2] for c in fake.calls if c[:2] == ("prctl", fake.PR_CAPBSET_DROP)]
    assert dropped == [0, 1, 21]
    assert fake.bounding == {5, 24}


def test_drop_bounding_covers_capabilities_without_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSyscalls(bounding={5, 45})
    monkeypatch.setattr(caps, "syscalls", fake)
    caps.drop_bounding(caps.CapabilitySets(bounding=frozenset({5})), last_cap=45)
    assert fake.bounding == {5}


def test_apply_order_capset_then_clear_then_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSyscalls(bounding=set())
    monkeypatch.setattr(caps, "syscalls", fake)
    sets = caps.parse(
        {
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
            "ambient": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
        }
    )
    caps.apply(sets)
    assert fake.calls == [
        ("capset", 1 << 5, 1 << 5 | 1 << 10, 1 << 0 | 1 << 10),
        ("prctl", fake.PR_CAP_AMBIENT, fake.PR_CAP_AMBIENT_CLEAR_ALL, 0),
        ("prctl", fake.PR_CAP_AMBIENT, fake.PR_CAP_AMBIENT_RAISE, 0),
        ("prctl", fake.PR_CAP_AMBIENT, fake.PR_CAP_AMBIENT_RAISE, 10),
        ("keepcaps", False),
    ]


def test_ambient_refused_by_the_kernel_is_skipped_like_runc(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeSyscalls(bounding=set(), refuse_ambient={0: errno.EPERM})
    monkeypatch.setattr(caps, "syscalls", fake)
    monkeypatch.setattr(log, "DEBUG", True)
    caps.apply(caps.CapabilitySets(ambient=frozenset({0, 5})))
    raised = [c[3] for c in fake.calls if c[:3] == ("prctl", 47, 2)]
    assert raised == [0, 5]
    assert "CAP_CHOWN" in capsys.readouterr().err  # only with --debug


def test_ambient_other_errors_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSyscalls(bounding=set(), refuse_ambient={5: errno.EINVAL})
    monkeypatch.setattr(caps, "syscalls", fake)
    with pytest.raises(SyscallError) as info:
        caps.apply(caps.CapabilitySets(ambient=frozenset({5})))
    assert info.value.errno == errno.EINVAL


def test_keep_for_setuid_sets_keepcaps(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSyscalls(bounding=set())
    monkeypatch.setattr(caps, "syscalls", fake)
    caps.keep_for_setuid()
    assert fake.calls == [("keepcaps", True)]


def test_capset_refusal_explains_the_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSyscalls(bounding=set())
    fake.refuse_capset = True
    monkeypatch.setattr(caps, "syscalls", fake)
    with pytest.raises(SyscallError, match="inheritable capabilities must be in the bounding"):
        caps.apply(caps.CapabilitySets(inheritable=frozenset({0})))


def test_any_bad_input_is_a_config_error() -> None:
    rng = random.Random(7)
    values: list[Any] = [None, 1, "CAP_KILL", "CAP_NOPE", [], ["CAP_KILL", 3], {"a": 1}, [[]], True]
    for _ in range(2000):
        spec: Any = {
            rng.choice([*caps.SET_NAMES, "other"]): rng.choice(values)
            for _ in range(rng.randint(0, 5))
        }
        if rng.random() < 0.1:
            spec = rng.choice(values)
        try:
            caps.parse(spec)
        except ConfigError as e:
            assert e.where.startswith("$.process.capabilities")
