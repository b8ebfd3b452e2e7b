"""lowrun.hooks: real hook processes (host /bin/sh), state on stdin, env, args, timeouts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from lowrun import syscalls
from lowrun.errors import HookError
from lowrun.hooks import PHASES, hooks_for, run_hooks

SH = "/bin/sh"
STATE: dict[str, Any] = {
    "ociVersion": "1.2.0",
    "id": "hook-test",
    "status": "creating",
    "pid": 4242,
    "bundle": "/run/bundles/hook-test",
    "annotations": {"org.example": "yes"},
}


def sh(script: str, **extra: Any) -> dict[str, Any]:
    return {"path": SH, "args": ["sh", "-c", script], **extra}


def test_state_is_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "state.json"
    run_hooks([sh(f"cat > {out}")], STATE, "createRuntime")
    assert json.loads(out.read_text()) == STATE


def test_args_are_argv_including_argv0(tmp_path: Path) -> None:
    out = tmp_path / "argv"
    script = f"tr '\\0' '|' < /proc/$$/cmdline > {out}"
    run_hooks([{"path": SH, "args": ["my-hook", "-c", script, "x"]}], STATE, "prestart")
    assert out.read_text() == f"my-hook|-c|{script}|x|"


def test_without_args_argv0_is_the_path(tmp_path: Path) -> None:
    script = tmp_path / "hook.sh"
    out = tmp_path / "argv0"
    script.write_text(f'#!/bin/sh\necho "$0 $#" > {out}\n')
    script.chmod(0o755)
    run_hooks([{"path": str(script)}], STATE, "poststart")
    assert out.read_text().strip() == f"{script} 0"


def test_env_is_exactly_the_hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOWRUN_TEST_LEAK", "1")
    out = tmp_path / "env"
    run_hooks([sh(f"env > {out}", env=["A=b=c", "EMPTY="])], STATE, "poststop")
    lines = set(out.read_text().splitlines())
    assert {"A=b=c", "EMPTY="} <= lines
    assert not any(line.startswith(("LOWRUN_TEST_LEAK=", "HOME=")) for line in lines)


def test_without_env_the_hook_inherits_lowruns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOWRUN_TEST_INHERITED", "yes")
    out = tmp_path / "env"
    run_hooks([sh(f"env > {out}")], STATE, "poststop")
    assert "LOWRUN_TEST_INHERITED=yes" in out.read_text().splitlines()


def test_failure_names_phase_path_status_and_stderr() -> None:
    with pytest.raises(HookError) as info:
        run_hooks([sh("echo noise; echo 'cannot attach veth' >&2; exit 3")], STATE, "createRuntime")
    message = str(info.value)
    assert message.startswith(f"createRuntime hook {SH} failed: exit status 3")
    assert "stderr: cannot attach veth" in message


def test_failure_without_stderr_shows_stdout() -> None:
    with pytest.raises(HookError, match="exit status 1; stdout: only stdout"):
        run_hooks([sh("echo only stdout; exit 1")], STATE, "prestart")


def test_stderr_tail_is_bounded() -> None:
    with pytest.raises(HookError) as info:
        run_hooks(
            [sh("head -c 300000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 1")],
            STATE,
            "poststart",
        )
    message = str(info.value)
    assert message.endswith("xEND")
    assert len(message) < 1200


def test_killed_by_signal() -> None:
    with pytest.raises(HookError, match=r"startContainer hook /bin/sh failed: killed by SIGKILL"):
        run_hooks([sh("kill -9 $$")], STATE, "startContainer")


def test_missing_hook_binary() -> None:
    with pytest.raises(HookError, match=r"prestart hook /nonexistent/hook: cannot run it: No such"):
        run_hooks([{"path": "/nonexistent/hook"}], STATE, "prestart")


def test_timeout_kills_the_hook_and_its_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"echo $$ > {pids}; sleep 60 & echo $! >> {pids}; wait"
    subreaper_before = syscalls.is_child_subreaper()
    started = time.monotonic()
    with pytest.raises(HookError) as info:
        run_hooks([sh(script, timeout=1)], STATE, "createContainer")
    elapsed = time.monotonic() - started
    assert f"createContainer hook {SH} timed out after 1s" in str(info.value)
    assert 0.9 < elapsed < 10
    recorded = [int(p) for p in pids.read_text().split()]
    assert len(recorded) == 2
    # killed and reaped (the orphaned sleep too): not even a zombie is left
    assert [pid for pid in recorded if Path(f"/proc/{pid}").exists()] == []
    assert syscalls.is_child_subreaper() == subreaper_before


def test_hook_within_its_timeout_succeeds(tmp_path: Path) -> None:
    out = tmp_path / "done"
    run_hooks([sh(f"sleep 0.1; touch {out}", timeout=5)], STATE, "poststart")
    assert out.exists()


def test_hooks_run_in_order_and_stop_at_the_first_failure(tmp_path: Path) -> None:
    log = tmp_path / "log"
    hooks = [sh(f"echo one >> {log}"), sh(f"echo two >> {log}; exit 2"), sh(f"echo three >> {log}")]
    with pytest.raises(HookError, match="exit status 2"):
        run_hooks(hooks, STATE, "prestart")
    assert log.read_text().split() == ["one", "two"]


def test_big_state_and_a_hook_that_does_not_read_it() -> None:
    state = dict(STATE, annotations={f"k{i}": "v" * 100 for i in range(5000)})
    started = time.monotonic()
    run_hooks([sh("exit 0", timeout=5)], state, "poststop")
    assert time.monotonic() - started < 4


def test_hook_gets_only_stdio_and_default_signals(tmp_path: Path) -> None:
    leaked_r, leaked_w = os.pipe()
    os.set_inheritable(leaked_w, True)
    out = tmp_path / "out"
    try:
        run_hooks(
            [
                sh(
                    f"ls /proc/$$/fd > {out}; grep SigIgn /proc/$$/status >> {out}; "
                    f"cut -d' ' -f5 /proc/$$/stat >> {out}; echo $$ >> {out}"
                )
            ],
            STATE,
            "prestart",
        )
    finally:
        os.close(leaked_r)
        os.close(leaked_w)
    lines = out.read_text().split("\n")
    fds = set()
    rest: list[str] = []
    for line in lines:
        if line.isdigit() and not rest:
            fds.add(int(line))
        else:
            rest.append(line)
    assert leaked_w not in fds
    assert {0, 1, 2} <= fds
    sigign = int(rest[0].split()[1], 16)
    assert not sigign & (1 << (13 - 1)), "SIGPIPE is ignored in the hook"
    pgrp, pid = rest[1], rest[2]
    assert pgrp == pid, "the hook is not the leader of its own process group"


def test_no_hooks_is_a_no_op() -> None:
    run_hooks(None, STATE, "prestart")
    run_hooks([], STATE, "prestart")


def test_hooks_for() -> None:
    config = {"hooks": {"prestart": [{"path": "/a"}], "poststop": [{"path": "/b"}, {"path": "/c"}]}}
    assert hooks_for(config, "prestart") == [{"path": "/a"}]
    assert [h["path"] for h in hooks_for(config, "poststop")] == ["/b", "/c"]
    assert hooks_for(config, "createRuntime") == []
    assert hooks_for({}, "poststart") == []
    assert PHASES == (
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    )
    with pytest.raises(ValueError, match="unknown hook phase 'prestop'"):
        hooks_for(config, "prestop")
