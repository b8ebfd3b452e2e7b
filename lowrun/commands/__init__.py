"""The verbs of lowrun's CLI, one module each: parse nothing, call the library, print.

`report_errors` is the one edge where errors become messages and exit codes: a
`LowrunError` (or an OS error) is printed as one line on stderr, and written to the
`--log` file in runc's format, with exit code 1; a traceback only with --debug.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lowrun.errors import LowrunError
from lowrun.state import StateStore


@dataclass
class Outcome:
    code: int = 0


def store_of(args: argparse.Namespace) -> StateStore:
    return StateStore(args.root)


def _log(args: argparse.Namespace, level: str, message: str) -> None:
    if not args.log:
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.log_format == "json":
        line = json.dumps({"level": level, "msg": message, "time": stamp})
    else:
        line = f'time="{stamp}" level={level} msg="{message}"'
    try:
        with open(args.log, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


@contextmanager
def report_errors(args: argparse.Namespace) -> Iterator[Outcome]:
    outcome = Outcome()
    try:
        yield outcome
    except (LowrunError, OSError) as exc:
        message = str(exc)
        if args.debug:
            traceback.print_exc()
        print(f"lowrun: {message}", file=sys.stderr)
        _log(args, "error", message)
        outcome.code = 1
    except KeyboardInterrupt:
        outcome.code = 130
    except Exception as exc:  # a bug: still one line for the user, the trace with --debug
        if args.debug:
            traceback.print_exc()
        message = f"internal error: {type(exc).__name__}: {exc}"
        print(f"lowrun: {message}", file=sys.stderr)
        _log(args, "error", message)
        outcome.code = 1
