"""Generate the code that is derived from files in the tree.

- the fast config.json validator, from the JSON schemas in oci-specs/;
- the gRPC stubs of the lifecycle manager, from proto/.
Each generator runs only when its output is older than its inputs.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GENERATORS = [
    "lowrun.spec.codegen",
    "shim.codegen",
]


def main() -> int:
    for name in GENERATORS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.generate(ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
