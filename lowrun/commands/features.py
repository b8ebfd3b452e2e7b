from __future__ import annotations

import argparse
import json
import sys

from lowrun.features import features


def main(args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(features(), indent="    ") + "\n")
    return 0
