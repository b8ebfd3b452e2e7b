"""Unit tests of lowrun's logic that needs no root: CLI, signals, namespaces plan, state, sync."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from lowrun import errors, namespaces
from lowrun.cli import COMMANDS, GLOBAL_FLAGS, main
from lowrun.container.exec import exec_process_spec
from lowrun.container.lifecycle import parse_signal
from lowrun.flags import parse
from lowrun.process import find_executable
from lowrun.state import ContainerState, StateStore, check_id
from lowrun.sync import Channel


def state(cid: str = "c1", **config) -> ContainerState:
    return ContainerState(id=cid, bundle="/b", rootfs="/b/rootfs", pid=123, pid_start=42,
                          created="2026-01-01T00:00:00Z", config=config)


@pytest.mark.parametrize(("text", "number"), [
    ("KILL", signal.SIGKILL), ("SIGKILL", signal.SIGKILL), ("9", 9), ("term", signal.SIGTERM),
    ("SIGUSR1", signal.SIGUSR1), ("hup", signal.SIGHUP),
])
def test_parse_signal(text, number):
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["SIGNOPE", "0", "999", "", "-1"])
def test_parse_signal_rejects(text):
    with pytest.raises(errors.LowrunError, match="invalid signal"):
        parse_signal(text)


def test_namespace_plan_splits_new_and_joined():
    plan = namespaces.plan({"linux": {"namespaces": [
        {"type": "pid"}, {"type": "network", "path": "/run/netns/x"}, {"type": "mount"}]}})
    assert plan.new == {"pid", "mount"}
    assert plan.join == {"network": "/run/netns/x"}
    assert plan.unshare_flags() == namespaces.FLAGS["pid"] | namespaces.FLAGS["mount"]
    assert plan.unshare_flags(exclude=("pid",)) == namespaces.FLAGS["mount"]
    assert plan.has("network") and not plan.has("uts")


def test_namespace_plan_rejects_unknown_type():
    with pytest.raises(errors.ConfigError) as info:
        namespaces.plan({"linux": {"namespaces": [{"type": "pid"}, {"type": "bogus"}]}})
    assert info.value.where == "$.linux.namespaces[1].type"


def test_open_paths_names_the_missing_namespace(tmp_path: Path):
    with pytest.raises(errors.ConfigError, match="network"):
        namespaces.open_paths({"network": str(tmp_path / "missing")})


def test_state_store_round_trip(tmp_path: Path):
    store = StateStore(str(tmp_path / "root"))
    store.reserve("c1")
    with pytest.raises(errors.ContainerExists):
        store.reserve("c1")
    store.save(state("c1", ociVersion="1.2.0"))
    loaded = store.load("c1")
    assert loaded.pid == 123 and loaded.config == {"ociVersion": "1.2.0"}
    assert store.ids() == ["c1"]
    store.remove("c1")
    assert store.ids() == []
    with pytest.raises(errors.ContainerNotFound):
        store.load("c1")


@pytest.mark.parametrize("cid", ["../x", "a/b", "", ".hidden", "x" * 2000])
def test_container_ids_are_checked(cid):
    with pytest.raises(errors.UsageError):
        check_id(cid)


def test_channel_rebuilds_errors_with_their_kind():
    a, b = Channel.pair()
    try:
        b.send_error(errors.ConfigError("$.process.cwd", "must be absolute"))
        with pytest.raises(errors.ConfigError) as info:
            a.recv("ready")
        assert info.value.where == "$.process.cwd"
        b.send_error(errors.HookError("prestart hook /x failed"))
        with pytest.raises(errors.HookError, match="prestart"):
            a.recv("ready")
        b.send("other")
        with pytest.raises(errors.LowrunError, match="expected ready"):
            a.recv("ready")
        b.close()
        with pytest.raises(errors.LowrunError, match="exited before ready"):
            a.recv("ready")
    finally:
        a.close()


def test_send_to_a_child_that_failed_raises_its_error():
    a, b = Channel.pair()
    try:
        b.send_error(errors.ConfigError("$.mounts[0]", "bad mount"))
        b.close()
        with pytest.raises(errors.ConfigError, match="bad mount"):
            a.send("go")
        with pytest.raises(errors.LowrunError, match="exited before go"):
            a.send("go")
    finally:
        a.close()


def test_exec_process_spec_overrides_the_containers_process():
    st = state(process={"args": ["sleep"], "env": ["PATH=/bin", "A=1"], "cwd": "/",
                        "terminal": True, "user": {"uid": 0, "gid": 0},
                        "capabilities": {"bounding": ["CAP_KILL"]}})
    proc = exec_process_spec(st, ["sh"], env=["A=2", "B=3"], cwd="/tmp",
                             user={"uid": 5, "gid": 6}, caps=["CAP_CHOWN"])
    assert proc["args"] == ["sh"]
    assert proc["terminal"] is False
    assert proc["env"] == ["PATH=/bin", "A=2", "B=3"]
    assert proc["cwd"] == "/tmp" and proc["user"] == {"uid": 5, "gid": 6}
    assert proc["capabilities"]["bounding"] == ["CAP_CHOWN", "CAP_KILL"]


def test_find_executable_uses_the_process_path(tmp_path: Path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert find_executable("tool", [f"PATH={bindir}"]) == str(tool)
    with pytest.raises(errors.ConfigError, match="'nope' not found"):
        find_executable("nope", [f"PATH={bindir}"])


def parse_args(argv):
    return parse(argv, GLOBAL_FLAGS, COMMANDS)


def test_cli_accepts_runcs_flags():
    args = parse_args(["--root", "/r", "--log", "/l", "--log-format", "json", "create",
                              "--bundle", "/b", "--pid-file", "/p", "--console-socket", "/s",
                              "--preserve-fds", "2", "--no-pivot", "id1"])
    assert (args.root, args.bundle, args.pid_file, args.preserve_fds, args.no_pivot) == (
        "/r", "/b", "/p", 2, True)
    args = parse_args(["exec", "--tty", "-e", "A=1", "--user", "1:2", "id1", "sh", "-c", "x"])
    assert args.args == ["sh", "-c", "x"] and args.env == ["A=1"]
    args = parse_args(["kill", "--all", "id1", "KILL"])
    assert args.all and args.signal == "KILL"


@pytest.mark.parametrize(("argv", "message"), [
    (["kill"], "kill: missing container id"),
    (["create", "--bogus", "x"], "create: unknown flag --bogus"),
    (["--root"], "flag --root needs a value"),
    (["frobnicate"], "unknown command 'frobnicate'; see 'lowrun --help'"),
    (["run", "--preserve-fds", "many", "x"], "run: --preserve-fds 'many': expected a number"),
    (["list", "--format", "yaml"], "--format 'yaml': use one of table, json"),
    (["state", "a", "b"], "state: unexpected argument 'b'"),
])
def test_cli_usage_errors_exit_1(capsys, argv, message):
    assert main(argv) == 1
    assert capsys.readouterr().err == f"lowrun: {message}\n"


def test_cli_flag_forms():
    args = parse_args(["--log-format=json", "run", "-d", "--bundle=/b", "--preserve-fds=2", "x"])
    assert (args.log_format, args.detach, args.bundle, args.preserve_fds) == ("json", True, "/b", 2)
    args = parse_args(["exec", "x", "--", "ls", "-l"])
    assert args.args == ["ls", "-l"]
    args = parse_args(["ps", "x", "-ef"])
    assert args.ps_args == ["-ef"]
    assert parse_args(["kill", "x"]).signal is None


def test_help(capsys):
    assert main(["--help"]) == 0
    assert "commands:" in capsys.readouterr().out
    assert main(["exec", "--help"]) == 0
    assert "--console-socket" in capsys.readouterr().out


def test_cli_reports_errors_in_one_line_and_logs_json(tmp_path: Path, capsys):
    log = tmp_path / "log.json"
    code = main(["--root", str(tmp_path), "--log", str(log), "--log-format", "json", "state",
                 "nope"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.strip() == "lowrun: container 'nope' does not exist"
    assert '"level":"error"' in log.read_text()


@pytest.mark.parametrize("text", ['{"a": {', '{"a": 1} x', "[1, NaN]", ""])
def test_jsonio_errors_without_the_json_package(text):
    """The C scanner misbehaves on syntax errors when json.decoder is not loaded."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, %r)\nfrom lowrun import jsonio\n"
            "try:\n    jsonio.loads(%r)\nexcept jsonio.JSONError as e:\n    print('JSONError', e)")
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-S", "-E", "-c", code % (root, text)],
                         capture_output=True, text=True).stdout
    assert out.startswith("JSONError ")


def test_jsonio_round_trip():
    from lowrun import jsonio

    value = {"a": [1, 2.5, {"b": None, "c": True}], "\u00e9": 'x"y', "n": {}, "l": []}
    assert jsonio.loads(jsonio.dumps(value)) == value
    import json

    assert jsonio.dumps(value, indent=2) == json.dumps(value, indent=2)


def test_version(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lowrun version ") and "spec: 1.2.0" in out


def test_update_flags_become_resources(tmp_path: Path):
    from lowrun.commands.update import _from_flags

    args = parse_args(["update", "--memory", "1048576", "--cpu-shares", "512",
                       "--cpuset-cpus", "0-1", "--pids-limit", "9", "id1"])
    assert _from_flags(args) == {"memory": {"limit": 1048576},
                                 "cpu": {"shares": 512, "cpus": "0-1"}, "pids": {"limit": 9}}
    bad = parse_args(["update", "--memory", "lots", "id1"])
    with pytest.raises(errors.UsageError, match="--memory"):
        _from_flags(bad)


def test_lowrun_imports_nothing_from_upper_layers():
    root = Path(__file__).resolve().parents[2] / "lowrun"
    for path in root.rglob("*.py"):
        text = path.read_text()
        for layer in ("shim", "engine"):
            assert f"from {layer}" not in text and f"import {layer}" not in text, path


def test_prewarm_finds_this_process_cgroup():
    from lowrun.cgroups import prewarm

    procs = prewarm._own_procs_file()
    assert procs is not None and procs.endswith("/cgroup.procs")
    with open(procs) as f:
        assert str(os.getpid()) in f.read().split()
