from __future__ import annotations

import sys
from types import SimpleNamespace

from lowrun import jsonio
from lowrun.features import features


def main(args: SimpleNamespace) -> int:
    sys.stdout.write(jsonio.dumps(features(), indent=4) + "\n")
    return 0
