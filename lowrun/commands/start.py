from __future__ import annotations

from types import SimpleNamespace

from lowrun.commands import store_of
from lowrun.container.lifecycle import start


def main(args: SimpleNamespace) -> int:
    start(store_of(args), args.container_id)
    return 0
