"""Docker's json-file log format: one JSON object per line, rotated by size and count.

Each line of output becomes `{"log": "text\\n", "stream": "stdout", "time": "RFC3339Nano"}`,
as dockerd writes `ID-json.log`, so that `docker logs` readers (and berthd) can read what a
monitor wrote. A line longer than 16 KiB is split into several entries, the last one of
which carries the newline, as docker does. Rotation renames `path` to `path.1`,
`path.1` to `path.2` and so on, keeping at most `max_files` files.

Stdlib only: the monitor imports this module.
"""

from __future__ import annotations

import json
import os
import time

TYPE_CHECKING = False  # not typing's: importing typing costs each monitor memory
if TYPE_CHECKING:  # the monitor imports this module: typing, pathlib cost it memory
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any

MAX_LINE = 16 * 1024


def rfc3339_nano(ns: int) -> str:
    """UTC time with nanoseconds, as Go's time.RFC3339Nano formats it (trailing zeros kept)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


class JsonFileLog:
    """Appends entries to a json-file log; safe for one writer (the container's monitor)."""

    def __init__(self, path: str, max_size: int = 0, max_files: int = 1) -> None:
        self.path = path
        self.max_size = max(0, max_size)
        self.max_files = max(1, max_files)
        self._partial: dict[str, bytes] = {}
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = os.fstat(self._fd).st_size

    def write(self, stream: str, data: bytes) -> None:
        """Log `data` read from `stream`; an incomplete last line waits for its end."""
        buf = self._partial.pop(stream, b"") + data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            self._emit_line(stream, buf[start : nl + 1])
            start = nl + 1
        rest = buf[start:]
        while len(rest) >= MAX_LINE:
            self._entry(stream, rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        if rest:
            self._partial[stream] = rest

    def flush(self, stream: str | None = None) -> None:
        """Write out an incomplete last line (at EOF of `stream`, or of every stream)."""
        names = [stream] if stream else list(self._partial)
        for name in names:
            rest = self._partial.pop(name, b"")
            if rest:
                self._entry(name, rest)

    def close(self) -> None:
        self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _emit_line(self, stream: str, line: bytes) -> None:
        while len(line) > MAX_LINE:
            self._entry(stream, line[:MAX_LINE])
            line = line[MAX_LINE:]
        self._entry(stream, line)

    def _entry(self, stream: str, chunk: bytes) -> None:
        record = {
            "log": chunk.decode("utf-8", "replace"),
            "stream": stream,
            "time": rfc3339_nano(time.time_ns()),
        }
        raw = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        if self.max_size and self._size > 0 and self._size + len(raw) > self.max_size:
            self._rotate()
        os.write(self._fd, raw)
        self._size += len(raw)

    def _rotate(self) -> None:
        os.close(self._fd)
        if self.max_files > 1:
            oldest = f"{self.path}.{self.max_files - 1}"
            if os.path.exists(oldest):
                os.unlink(oldest)
            for i in range(self.max_files - 2, 0, -1):
                src = f"{self.path}.{i}"
                if os.path.exists(src):
                    os.rename(src, f"{self.path}.{i + 1}")
            os.rename(self.path, f"{self.path}.1")
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        else:
            flags = os.O_WRONLY | os.O_TRUNC | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o640)
        self._size = 0


def read_entries(path: str | Path, rotated: bool = True) -> Iterator[dict[str, Any]]:
    """Entries of a json-file log, oldest first (rotated files first when `rotated`)."""
    from pathlib import Path

    base = Path(path)
    files: list[Path] = []
    if rotated:
        i = 1
        while Path(f"{base}.{i}").exists():
            files.append(Path(f"{base}.{i}"))
            i += 1
        files.reverse()
    if base.exists():
        files.append(base)
    for f in files:
        with f.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    entry: dict[str, Any] = json.loads(line)
                    yield entry
