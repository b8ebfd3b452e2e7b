"""shimd: the lifecycle manager's daemon.

    shimd [--root DIR] [--state DIR] [--address SOCKET] [--runtime BIN]
          [--group NAME] [--log-level LEVEL]

It serves until SIGTERM or SIGINT; stopping it (or killing it) leaves containers
and their monitors running, and the next shimd on the same --state finds them.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from shim.errors import ShimError
from shim.server import ShimServer
from shim.services import ServiceContext

DEFAULT_ROOT = "/var/lib/berth-shim"
DEFAULT_STATE = "/run/berth-shim"
DEFAULT_ADDRESS = "/run/berth-shim/shim.sock"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="shimd", description="berth's lifecycle manager (gRPC)")
    p.add_argument("--root", default=DEFAULT_ROOT, help="persistent state (metadata, content)")
    p.add_argument("--state", default=DEFAULT_STATE, help="runtime state: tasks, sockets")
    p.add_argument("--address", default=DEFAULT_ADDRESS, help="unix socket to serve gRPC on")
    p.add_argument("--runtime", default="lowrun",
                   help="default OCI runtime binary (runc-compatible), name or path")
    p.add_argument("--group", default="", help="group allowed on the socket (mode 0660)")
    p.add_argument("--no-zygote", action="store_true",
                   help="exec each monitor instead of forking it from a shared zygote")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"])
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx = ServiceContext(root=Path(args.root).resolve(), state=Path(args.state).resolve(),
                         runtime=args.runtime)
    ctx.shared["monitor_zygote"] = not args.no_zygote
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = ShimServer(ctx, Path(args.address).resolve(), args.group).start()
    except ShimError as exc:
        print(f"shimd: {exc}", file=sys.stderr)
        return 1
    while not stop.wait(1.0):
        pass
    logging.getLogger("shimd").info("stopping; containers keep running")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
