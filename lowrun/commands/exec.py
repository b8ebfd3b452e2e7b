from __future__ import annotations

import json
from types import SimpleNamespace

from lowrun.commands import store_of
from lowrun.container.exec import ExecOptions, exec_in, exec_process_spec
from lowrun.errors import ConfigError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _user(text: str) -> dict[str, Any]:
    uid, _, gid = text.partition(":")
    try:
        return {"uid": int(uid), "gid": int(gid or 0)}
    except ValueError:
        raise UsageError(f"--user {text!r}: expected numeric uid[:gid]") from None


def _load_process(path: str) -> dict[str, Any]:
    from lowrun.spec.load import validate_process

    try:
        with open(path) as f:
            proc: dict[str, Any] = json.load(f)
    except OSError as exc:
        raise UsageError(f"--process {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}", f"invalid JSON: {exc.msg}") from None
    validate_process(proc)
    return proc


def main(args: SimpleNamespace) -> int:
    store = store_of(args)
    command = [a for a in args.args if a != "--"] if args.args[:1] == ["--"] else args.args
    if args.process:
        proc = _load_process(args.process)
    else:
        if not command:
            raise UsageError("exec needs a command, or --process")
        user = _user(args.user) if args.user else None
        if user is not None and args.additional_gids:
            user["additionalGids"] = [int(g) for g in args.additional_gids]
        proc = exec_process_spec(
            store.load(args.container_id),
            command,
            env=args.env,
            cwd=args.cwd,
            user=user,
            tty=args.tty,
            caps=args.cap,
            no_new_privs=True if args.no_new_privs else None,
        )
    opts = ExecOptions(
        process=proc,
        detach=args.detach,
        pid_file=args.pid_file,
        console_socket=args.console_socket,
        preserve_fds=args.preserve_fds,
    )
    return exec_in(store, args.container_id, opts)
