"""Warnings and debug lines on stderr, without the logging package (~4 ms to import).

lowrun prints nothing on stdout that a caller did not ask for; warnings go to stderr as
one line each, debug lines only after `--debug` set DEBUG.
"""

from __future__ import annotations

import sys

DEBUG = False


def _emit(level: str, msg: str, args: tuple[object, ...]) -> None:
    sys.stderr.write(f"lowrun: {level}: {msg % args if args else msg}\n")


def warning(msg: str, *args: object) -> None:
    _emit("warning", msg, args)


def debug(msg: str, *args: object) -> None:
    if DEBUG:
        _emit("debug", msg, args)
