from __future__ import annotations

from types import SimpleNamespace

from lowrun.commands import store_of
from lowrun.container.lifecycle import delete


def main(args: SimpleNamespace) -> int:
    delete(store_of(args), args.container_id, force=args.force)
    return 0
