"""The runtime driver: the OCI runtime command line (runc's) as Python calls.

Any runc-compatible binary works (lowrun, runc, crun): a name on PATH or a path.
Each (runtime, namespace) pair has its own `--root`, so that the same container id
can live in two namespaces and runtimes with different state formats never meet.
The monitor runs `create`, `start`, `exec`, `kill` and `delete` (it must be the
parent of what they start); shimd runs the rest through this driver.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from shim.errors import FailedPrecondition, InvalidArgument, NotFound

TIMEOUT = 60.0


def resolve(binary: str) -> str:
    """The absolute path of a runtime binary, or InvalidArgument naming it."""
    if os.path.isabs(binary):
        if os.access(binary, os.X_OK):
            return binary
        raise InvalidArgument(f"runtime {binary!r} is not an executable file")
    found = shutil.which(binary)
    if found is None:
        # the virtual environment's own commands (lowrun) without an activated venv
        beside = os.path.join(os.path.dirname(sys.executable), binary)
        if os.access(beside, os.X_OK):
            return beside
        raise InvalidArgument(
            f"runtime {binary!r} is not on PATH: install it or give an absolute path"
        )
    return found


def runtime_root(state: Path, binary: str, namespace: str) -> Path:
    name = os.path.basename(binary)
    return state / "runtime" / name / namespace


class RuntimeDriver:
    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root

    @property
    def name(self) -> str:
        return os.path.basename(self.binary)

    def run(self, *args: str, stdin: str | None = None) -> str:
        cmd = [self.binary, "--root", str(self.root), *args]
        try:
            proc = subprocess.run(
                cmd, input=stdin, capture_output=True, text=True, timeout=TIMEOUT,
                stdin=None if stdin is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise FailedPrecondition(f"{self.name} {args[0]} did not finish in {TIMEOUT}s") \
                from exc
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
            if "does not exist" in msg or "not found" in msg.lower():
                raise NotFound(f"{self.name} {args[0]}: {msg}")
            raise FailedPrecondition(f"{self.name} {args[0]} failed: {msg}")
        return proc.stdout

    def state(self, container_id: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.run("state", container_id))
        return result

    def pause(self, container_id: str) -> None:
        self.run("pause", container_id)

    def resume(self, container_id: str) -> None:
        self.run("resume", container_id)

    def ps(self, container_id: str) -> list[int]:
        out = self.run("ps", "--format", "json", container_id).strip()
        if not out or out == "null":
            return []
        return [int(p) for p in json.loads(out)]

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        self.run("update", "--resources", "-", container_id, stdin=json.dumps(resources))

    def delete_force(self, container_id: str) -> None:
        self.run("delete", "--force", container_id)
