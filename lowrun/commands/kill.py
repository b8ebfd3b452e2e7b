from __future__ import annotations

import argparse

from lowrun.commands import store_of
from lowrun.container.lifecycle import kill, parse_signal


def main(args: argparse.Namespace) -> int:
    kill(store_of(args), args.container_id, parse_signal(args.signal), all_processes=args.all)
    return 0
