"""When lowrun re-executes itself from a read-only interpreter (lowrun/exeguard.py)."""

from __future__ import annotations

from typing import Any

import pytest

from lowrun import exeguard
from lowrun.errors import LowrunError


def config(bounding: list[str], *namespaces: str) -> dict[str, Any]:
    return {
        "process": {"capabilities": {"bounding": bounding}},
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", *namespaces)]},
    }


@pytest.mark.parametrize(
    ("cfg", "extra", "expected"),
    [
        (config(["CAP_KILL"]), [], False),  # non-dumpable stages suffice
        (config(["CAP_KILL", "CAP_SYS_PTRACE"]), [], True),
        (config(["CAP_SYS_PTRACE"], "user"), [], False),  # ptrace caps of another userns
        (config(["CAP_KILL"]), [{"capabilities": {"bounding": ["CAP_SYS_PTRACE"]}}], True),
        (config(["CAP_KILL"]), [{"capabilities": {"bounding": ["CAP_KILL"]}}], False),
        ({"process": {}}, [], False),  # no capabilities at all
        ({}, [{}], False),
    ],
)
def test_needs_guard(cfg: dict[str, Any], extra: list[dict[str, Any]], expected: bool) -> None:
    assert exeguard.needs_guard(cfg, *extra) is expected


def test_ensure_leaves_an_embedding_program_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest is not the lowrun command: ensure returns instead of re-executing it."""
    monkeypatch.delenv(exeguard.GUARD_ENV, raising=False)
    exeguard.ensure(config(["CAP_SYS_PTRACE"]))


def test_ensure_refuses_to_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exeguard, "_is_lowrun_command", lambda: True)
    monkeypatch.setattr(exeguard, "exe_is_read_only", lambda: False)
    monkeypatch.setenv(exeguard.GUARD_ENV, "1")
    with pytest.raises(LowrunError, match="read-only copy of the interpreter"):
        exeguard.ensure(config(["CAP_SYS_PTRACE"]))
