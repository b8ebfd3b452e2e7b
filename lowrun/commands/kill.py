from __future__ import annotations

from types import SimpleNamespace

from lowrun.commands import store_of
from lowrun.container.lifecycle import kill, parse_signal


def main(args: SimpleNamespace) -> int:
    sig = parse_signal(args.signal or "SIGTERM")
    kill(store_of(args), args.container_id, sig, all_processes=args.all)
    return 0
