from __future__ import annotations

import argparse

from lowrun.commands import store_of
from lowrun.container.lifecycle import resume


def main(args: argparse.Namespace) -> int:
    resume(store_of(args), args.container_id)
    return 0
