"""lowrun's command line: runc's commands and flags, parsed here, run by lowrun.commands.

Nothing heavy is imported up front; each verb's module is imported when it runs, so
that `lowrun state` does not pay for what `lowrun create` needs.
"""

from __future__ import annotations

import sys

from lowrun import OCI_VERSION, __version__
from lowrun.errors import UsageError
from lowrun.flags import BOOL, INT, LIST, VALUE, Command, Flag, parse, usage

HELP = Flag("--help,-h", BOOL, "show this help")

GLOBAL_FLAGS = [
    Flag("--root", VALUE, "state directory", "/run/lowrun"),
    Flag("--log", VALUE, "also write errors to this file"),
    Flag("--log-format", VALUE, "text or json", "text"),
    Flag("--debug", BOOL, "print a traceback with each error"),
    Flag("--systemd-cgroup", BOOL, "not supported: refused"),
    Flag("--criu", VALUE, "accepted for runc compatibility"),
    Flag("--rootless", VALUE, "accepted for runc compatibility", "auto"),
    Flag("--version,-v", BOOL, "print the version"),
    HELP,
]

CREATE_FLAGS = [
    Flag("--bundle,-b", VALUE, "path to the bundle directory", "."),
    Flag("--console-socket", VALUE, "unix socket that receives the pty master"),
    Flag("--pid-file", VALUE, "file to write the init's pid to"),
    Flag("--no-pivot", BOOL, "use MS_MOVE + chroot, not pivot_root"),
    Flag("--no-new-keyring", BOOL, "accepted for runc compatibility"),
    Flag("--preserve-fds", INT, "pass N more fds, from 3 on"),
    HELP,
]

UPDATE_LIMITS = ("--memory", "--memory-swap", "--memory-reservation", "--kernel-memory",
                 "--cpu-shares", "--cpu-quota", "--cpu-period", "--cpu-rt-period",
                 "--cpu-rt-runtime", "--cpuset-cpus", "--cpuset-mems", "--pids-limit",
                 "--blkio-weight", "--l3-cache-schema", "--mem-bw-schema")

ID = ("container_id",)

COMMANDS = [
    Command("create", "create a container; its init waits for start", CREATE_FLAGS, ID),
    Command("run", "create and start a container, wait for it, delete it", [
        *CREATE_FLAGS,
        Flag("--detach,-d", BOOL, "return once started"),
        Flag("--keep", BOOL, "do not delete the container after it exits"),
        Flag("--no-subreaper", BOOL, "accepted for runc compatibility"),
    ], ID),
    Command("start", "start a created container", [HELP], ID),
    Command("state", "print the state of a container", [HELP], ID),
    Command("pause", "freeze every process of a container", [HELP], ID),
    Command("resume", "thaw a paused container", [HELP], ID),
    Command("kill", "send a signal to the init (default SIGTERM)", [
        Flag("--all,-a", BOOL, "signal every process of the container"), HELP,
    ], ("container_id", "signal?")),
    Command("delete", "delete a stopped container (any, with --force)", [
        Flag("--force,-f", BOOL, "kill it first if it runs"), HELP,
    ], ID),
    Command("list", "list containers", [
        Flag("--format,-f", VALUE, "table or json", "table"),
        Flag("--quiet,-q", BOOL, "print only the ids"), HELP,
    ]),
    Command("ps", "list the processes of a container", [
        Flag("--format,-f", VALUE, "table or json", "table"), HELP,
    ], ID, rest="ps_args"),
    Command("exec", "run a process in a container", [
        Flag("--process,-p", VALUE, "process.json (an OCI process)"),
        Flag("--tty,-t", BOOL, "allocate a pty (needs --console-socket)"),
        Flag("--detach,-d", BOOL, "return once started"),
        Flag("--env,-e", LIST, "KEY=value, repeatable"),
        Flag("--cwd", VALUE, "working directory"),
        Flag("--user,-u", VALUE, "uid[:gid]"),
        Flag("--additional-gids,-g", LIST, "additional gid, repeatable"),
        Flag("--cap,-c", LIST, "add a capability, repeatable"),
        Flag("--no-new-privs", BOOL, "set no_new_privs"),
        Flag("--console-socket", VALUE, "unix socket that receives the pty master"),
        Flag("--pid-file", VALUE, "file to write the process's pid to"),
        Flag("--preserve-fds", INT, "pass N more fds, from 3 on"),
        Flag("--process-label", VALUE, "accepted; SELinux is not supported"),
        Flag("--apparmor", VALUE, "accepted; AppArmor is not supported"),
        Flag("--ignore-paused", BOOL, "accepted for runc compatibility"),
        Flag("--cgroup", VALUE, "accepted for runc compatibility"),
        HELP,
    ], ID, rest="args"),
    Command("update", "update a container's resource limits", [
        Flag("--resources,-r", VALUE, "linux.resources JSON file, - for stdin"),
        *[Flag(name, VALUE, "limit, as runc update takes it") for name in UPDATE_LIMITS],
        HELP,
    ], ID),
    Command("events", "print resource statistics and OOM events", [
        Flag("--stats", BOOL, "print statistics once and exit"),
        Flag("--interval", VALUE, "time between statistics", "5s"), HELP,
    ], ID),
    Command("spec", "write a default config.json", [
        Flag("--bundle,-b", VALUE, "where to write it", "."),
        Flag("--rootless", BOOL, "refused: lowrun runs as root"), HELP,
    ]),
    Command("features", "print what this runtime supports, as JSON", [HELP]),
]

CHOICES = {"log_format": ("text", "json"), "format": ("table", "json")}


def version_text() -> str:
    return f"lowrun version {__version__}\nspec: {OCI_VERSION}\npython: {sys.version.split()[0]}\n"


def _check_choices(args: object) -> None:
    for dest, allowed in CHOICES.items():
        value = getattr(args, dest, None)
        if value is not None and value not in allowed:
            flag = "--" + dest.replace("_", "-")
            raise UsageError(f"{flag} {value!r}: use one of {', '.join(allowed)}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv, GLOBAL_FLAGS, COMMANDS)
        _check_choices(args)
    except UsageError as exc:
        sys.stderr.write(f"lowrun: {exc}\n")
        return 1
    if args.help:
        sys.stdout.write(usage(GLOBAL_FLAGS, COMMANDS, args.command))
        return 0
    if args.version:
        sys.stdout.write(version_text())
        return 0
    if args.command is None:
        sys.stderr.write(usage(GLOBAL_FLAGS, COMMANDS))
        return 1
    from importlib import import_module

    from lowrun import log
    from lowrun.commands import report_errors

    log.DEBUG = args.debug

    with report_errors(args) as outcome:
        if args.systemd_cgroup:
            raise UsageError("--systemd-cgroup: lowrun has no systemd cgroup driver")
        outcome.code = import_module(f"lowrun.commands.{args.command}").main(args)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
