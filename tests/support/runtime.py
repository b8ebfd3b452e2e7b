"""Drive an OCI runtime binary (lowrun, runc, crun) with its own temporary --root."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOWRUN = ROOT / ".venv" / "bin" / "lowrun"


def binary_for(name: str) -> str | None:
    if name == "lowrun":
        return str(LOWRUN) if LOWRUN.exists() else None
    return shutil.which(name)


@dataclass
class Runtime:
    """One runtime binary and the state root this test gave it."""

    name: str
    binary: str
    root: Path

    def cmd(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def run(
        self, *args: str, check: bool = False, timeout: float = 60, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run the runtime; stdout and stderr go to files, not pipes, because a detached
        container inherits them and would keep a pipe open long after the command ends."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(self.cmd(*args), timeout=timeout, stdout=out, stderr=err, **kw)
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(
                proc.args, proc.returncode, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )
        if check:
            result.check_returncode()
        return result

    def state(self, container_id: str) -> dict[str, Any]:
        out = self.run("state", container_id, check=True).stdout
        result: dict[str, Any] = json.loads(out)
        return result

    def ids(self) -> list[str]:
        out = self.run("list", "--format", "json").stdout.strip()
        if not out or out == "null":
            return []
        return [c["id"] for c in json.loads(out)]

    def cleanup(self) -> None:
        """Force-delete every container this runtime still knows in its root."""
        for cid in self.ids():
            self.run("delete", "--force", cid)
