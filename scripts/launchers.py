"""Replace pip's console scripts of the short-lived commands with lean launchers.

pip's wrappers start the interpreter with `site` (every .pth file, the editable
finder) and import `re`; lowrun and the monitor need only the standard library and
the project itself, so their launchers run `python -S -E` with the project's root
put first on sys.path. The interpreter is the virtual environment's, by its path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"

LAUNCHERS = {
    "lowrun": "lowrun.cli",
    "shim-monitor": "shim.monitor.main",
}

TEMPLATE = """#!{python} -SE
import sys
sys.path.insert(0, {root!r})
from {module} import main
sys.exit(main())
"""


def write_launcher(name: str, module: str) -> None:
    target = VENV_BIN / name
    text = TEMPLATE.format(python=VENV_BIN / "python", root=str(ROOT), module=module)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, target)


def main() -> int:
    for name, module in LAUNCHERS.items():
        write_launcher(name, module)
    return 0


if __name__ == "__main__":
    sys.exit(main())
