from __future__ import annotations

import argparse

from lowrun.commands import store_of
from lowrun.container.lifecycle import delete


def main(args: argparse.Namespace) -> int:
    delete(store_of(args), args.container_id, force=args.force)
    return 0
