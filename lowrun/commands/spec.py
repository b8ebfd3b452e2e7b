from __future__ import annotations

import json
import os
from types import SimpleNamespace

from lowrun.errors import UsageError
from lowrun.spec.default import default_spec


def main(args: SimpleNamespace) -> int:
    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise UsageError(f"{path} already exists; remove it first")
    spec = default_spec(rootless=args.rootless)
    with open(path, "w") as f:
        json.dump(spec, f, indent="\t")
        f.write("\n")
    return 0
