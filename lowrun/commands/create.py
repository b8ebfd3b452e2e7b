from __future__ import annotations

from types import SimpleNamespace

from lowrun.commands import store_of
from lowrun.container.create import CreateOptions, create
from lowrun.errors import UsageError


def options(args: SimpleNamespace) -> CreateOptions:
    if args.preserve_fds < 0:
        raise UsageError("--preserve-fds must not be negative")
    return CreateOptions(
        bundle=args.bundle,
        pid_file=args.pid_file,
        console_socket=args.console_socket,
        preserve_fds=args.preserve_fds,
        no_pivot=args.no_pivot,
    )


def main(args: SimpleNamespace) -> int:
    create(store_of(args), args.container_id, options(args))
    return 0
