from __future__ import annotations

from types import SimpleNamespace

from lowrun.commands import store_of
from lowrun.commands.create import options
from lowrun.container.run import run


def main(args: SimpleNamespace) -> int:
    return run(store_of(args), args.container_id, options(args), detach=args.detach,
               keep=args.keep)
