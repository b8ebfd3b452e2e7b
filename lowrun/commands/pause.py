from __future__ import annotations

from types import SimpleNamespace

from lowrun.commands import store_of
from lowrun.container.lifecycle import pause


def main(args: SimpleNamespace) -> int:
    pause(store_of(args), args.container_id)
    return 0
