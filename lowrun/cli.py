"""lowrun's command line: runc's commands and flags, parsed here, run by lowrun.commands.

Only argparse is imported up front; each verb's module is imported when it runs, so
that `lowrun state` does not pay for what `lowrun create` needs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from lowrun import OCI_VERSION, __version__


class _Parser(argparse.ArgumentParser):
    """runc exits 1 on usage errors; so does lowrun."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"lowrun: {message}\n")


def _id(p: argparse.ArgumentParser) -> None:
    p.add_argument("container_id", metavar="ID")


def _create_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", "-b", default=".", help="path to the bundle directory")
    p.add_argument("--console-socket", help="unix socket that receives the pty master")
    p.add_argument("--pid-file", help="file to write the init's pid to")
    p.add_argument("--no-pivot", action="store_true", help="use MS_MOVE + chroot, not pivot_root")
    p.add_argument("--no-new-keyring", action="store_true", help="accepted for runc compatibility")
    p.add_argument("--preserve-fds", type=int, default=0, help="pass N fds from 3 on")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lowrun", description="An OCI runtime with runc's command line.")
    parser.add_argument("--root", default="/run/lowrun", help="state directory")
    parser.add_argument("--log", help="also write errors to this file")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--systemd-cgroup", action="store_true", help="not supported: refused")
    parser.add_argument("--criu", help="accepted for runc compatibility")
    parser.add_argument("--rootless", default="auto", help="accepted for runc compatibility")
    parser.add_argument("--version", "-v", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("create", help="create a container; its init waits for start")
    _create_flags(p)
    _id(p)
    p = sub.add_parser("run", help="create and start a container, wait for it")
    _create_flags(p)
    p.add_argument("--detach", "-d", action="store_true")
    p.add_argument("--keep", action="store_true", help="do not delete the container after exit")
    p.add_argument("--no-subreaper", action="store_true", help="accepted for runc compatibility")
    _id(p)
    for verb, text in (("start", "start a created container"), ("state", "print the state"),
                       ("pause", "freeze every process"), ("resume", "thaw a paused container")):
        _id(sub.add_parser(verb, help=text))
    p = sub.add_parser("kill", help="send a signal to the init (default SIGTERM)")
    p.add_argument("--all", "-a", action="store_true", help="signal every process")
    _id(p)
    p.add_argument("signal", nargs="?", default="SIGTERM")
    p = sub.add_parser("delete", help="delete a stopped container (or any, with --force)")
    p.add_argument("--force", "-f", action="store_true")
    _id(p)
    p = sub.add_parser("list", help="list containers")
    p.add_argument("--format", "-f", choices=["table", "json"], default="table")
    p.add_argument("--quiet", "-q", action="store_true")
    p = sub.add_parser("ps", help="list the processes of a container")
    p.add_argument("--format", "-f", choices=["table", "json"], default="table")
    _id(p)
    p.add_argument("ps_args", nargs=argparse.REMAINDER)
    p = sub.add_parser("exec", help="run a process in a container")
    p.add_argument("--process", "-p", help="process.json (OCI process)")
    p.add_argument("--tty", "-t", action="store_true")
    p.add_argument("--detach", "-d", action="store_true")
    p.add_argument("--env", "-e", action="append", default=[])
    p.add_argument("--cwd")
    p.add_argument("--user", "-u", help="uid[:gid]")
    p.add_argument("--additional-gids", "-g", action="append", default=[])
    p.add_argument("--cap", "-c", action="append", default=[])
    p.add_argument("--no-new-privs", action="store_true")
    p.add_argument("--console-socket")
    p.add_argument("--pid-file")
    p.add_argument("--preserve-fds", type=int, default=0)
    p.add_argument("--process-label", help="accepted; SELinux is not supported")
    p.add_argument("--apparmor", help="accepted; AppArmor is not supported")
    p.add_argument("--ignore-paused", action="store_true")
    p.add_argument("--cgroup", help="accepted for runc compatibility")
    _id(p)
    p.add_argument("args", nargs=argparse.REMAINDER)
    p = sub.add_parser("update", help="update a container's resource limits")
    p.add_argument("--resources", "-r", help="linux.resources JSON file, - for stdin")
    for flag in ("--memory", "--memory-swap", "--memory-reservation", "--kernel-memory",
                 "--cpu-shares", "--cpu-quota", "--cpu-period", "--cpu-rt-period",
                 "--cpu-rt-runtime", "--cpuset-cpus", "--cpuset-mems", "--pids-limit",
                 "--blkio-weight", "--l3-cache-schema", "--mem-bw-schema"):
        p.add_argument(flag)
    _id(p)
    p = sub.add_parser("events", help="print resource statistics (and OOM events)")
    p.add_argument("--stats", action="store_true", help="print statistics once and exit")
    p.add_argument("--interval", default="5s")
    _id(p)
    p = sub.add_parser("spec", help="write a default config.json")
    p.add_argument("--bundle", "-b", default=".")
    p.add_argument("--rootless", action="store_true")
    sub.add_parser("features", help="print what this runtime supports, as JSON")
    return parser


def version_text() -> str:
    return f"lowrun version {__version__}\nspec: {OCI_VERSION}\npython: {sys.version.split()[0]}\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        sys.stdout.write(version_text())
        return 0
    if not args.command:
        parser.print_help(sys.stderr)
        return 1
    from lowrun.commands import report_errors

    module = importlib.import_module(f"lowrun.commands.{args.command}")
    with report_errors(args) as outcome:
        outcome.code = module.main(args)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
