from __future__ import annotations

from types import SimpleNamespace

from lowrun.commands import store_of
from lowrun.container.lifecycle import resume


def main(args: SimpleNamespace) -> int:
    resume(store_of(args), args.container_id)
    return 0
