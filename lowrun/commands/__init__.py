"""The verbs of lowrun's CLI, one module each: parse nothing, call the library, print.

`report_errors` is the one edge where errors become messages and exit codes: a
`LowrunError` (or an OS error) is printed as one line on stderr, and written to the
`--log` file in runc's format, with exit code 1; a traceback only with --debug.
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

from lowrun import jsonio
from lowrun.errors import LowrunError
from lowrun.state import StateStore


class Outcome:
    __slots__ = ("code",)

    def __init__(self) -> None:
        self.code = 0


def store_of(args: SimpleNamespace) -> StateStore:
    return StateStore(args.root)


def _log(args: SimpleNamespace, level: str, message: str) -> None:
    if not args.log:
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.log_format == "json":
        line = jsonio.dumps({"level": level, "msg": message, "time": stamp})
    else:
        line = f"time={jsonio.dumps(stamp)} level={level} msg={jsonio.dumps(message)}"
    try:
        with open(args.log, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def _fail(args: SimpleNamespace, message: str) -> None:
    if args.debug:
        import traceback

        traceback.print_exc()
    sys.stderr.write(f"lowrun: {message}\n")
    _log(args, "error", message)


class report_errors:
    """`with report_errors(args) as outcome:` turns errors into messages and outcome.code."""

    def __init__(self, args: SimpleNamespace) -> None:
        self.args = args
        self.outcome = Outcome()

    def __enter__(self) -> Outcome:
        return self.outcome

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> bool:
        if kind is None or exc is None:
            return False
        if isinstance(exc, LowrunError | OSError):
            _fail(self.args, str(exc))
            self.outcome.code = 1
        elif isinstance(exc, KeyboardInterrupt):
            self.outcome.code = 130
        elif isinstance(exc, Exception):  # a bug: one line for the user, a trace with --debug
            _fail(self.args, f"internal error: {type(exc).__name__}: {exc}")
            self.outcome.code = 1
        else:
            return False
        return True
