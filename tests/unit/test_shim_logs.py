"""The json-file log writer: docker's format, line splitting, rotation."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shim.logs import MAX_LINE, JsonFileLog, read_entries, rfc3339_nano


def test_lines_become_docker_entries(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    log = JsonFileLog(str(path))
    log.write("stdout", b"one\ntw")
    log.write("stderr", b"err\n")
    log.write("stdout", b"o\nthree")
    log.close()
    raw = path.read_text().splitlines()
    entries = [json.loads(line) for line in raw]
    assert [(e["stream"], e["log"]) for e in entries] == [
        ("stdout", "one\n"), ("stderr", "err\n"), ("stdout", "two\n"), ("stdout", "three")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", e["time"])
               for e in entries)
    assert set(entries[0]) == {"log", "stream", "time"}


def test_long_lines_are_split_at_16k(tmp_path: Path) -> None:
    path = tmp_path / "l.log"
    log = JsonFileLog(str(path))
    log.write("stdout", b"x" * (MAX_LINE * 2 + 10) + b"\n")
    log.close()
    sizes = [len(e["log"]) for e in read_entries(path)]
    assert sizes == [MAX_LINE, MAX_LINE, 11]


def test_rotation_keeps_max_files(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    log = JsonFileLog(str(path), max_size=300, max_files=3)
    for i in range(40):
        log.write("stdout", f"line {i:02d}\n".encode())
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.log", "r.log.1", "r.log.2"]
    assert all(p.stat().st_size <= 300 for p in tmp_path.iterdir())
    lines = [e["log"] for e in read_entries(path)]
    assert lines == sorted(lines) and lines[-1] == "line 39\n"
    assert len(lines) < 40  # the oldest were rotated away


def test_rotation_with_one_file_truncates(tmp_path: Path) -> None:
    path = tmp_path / "one.log"
    log = JsonFileLog(str(path), max_size=200, max_files=1)
    for i in range(20):
        log.write("stdout", f"{i}\n".encode())
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["one.log"]
    assert [e["log"] for e in read_entries(path)][-1] == "19\n"


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "u.log"
    log = JsonFileLog(str(path))
    log.write("stdout", b"caf\xc3\xa9 \xff\n")
    log.close()
    assert next(read_entries(path))["log"] == "café \ufffd\n"


def test_rfc3339_nano() -> None:
    assert rfc3339_nano(1_700_000_000_000_000_123) == "2023-11-14T22:13:20.000000123Z"
