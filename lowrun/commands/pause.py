from __future__ import annotations

import argparse

from lowrun.commands import store_of
from lowrun.container.lifecycle import pause


def main(args: argparse.Namespace) -> int:
    pause(store_of(args), args.container_id)
    return 0
