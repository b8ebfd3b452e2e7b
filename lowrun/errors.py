"""The error kinds of lowrun. The CLI turns them into messages and exit codes."""

from __future__ import annotations

import os


class LowrunError(Exception):
    """Base of every error lowrun reports to its caller."""


class ConfigError(LowrunError):
    """The bundle or its config.json is invalid; `where` is a JSON path like `$.process.args`."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class BundleError(LowrunError):
    """The bundle directory itself is unusable (missing, no config.json, bad rootfs)."""


class ContainerNotFound(LowrunError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id!r} does not exist")
        self.container_id = container_id


class ContainerExists(LowrunError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container with id {container_id!r} already exists")
        self.container_id = container_id


class InvalidState(LowrunError):
    """The operation is not allowed in the container's current state."""


class UsageError(LowrunError):
    """A command-line flag or argument is wrong."""


class HookError(LowrunError):
    """A lifecycle hook failed or timed out."""


class SyscallError(LowrunError, OSError):
    """A system call failed; keeps the errno and what it was applied to."""

    def __init__(self, err: int, call: str, what: str = "") -> None:
        detail = f"{call} {what}".strip()
        OSError.__init__(self, err, f"{detail}: {os.strerror(err)}")
        self.call = call
        self.what = what

    def __str__(self) -> str:
        return str(self.strerror)


class suppress:
    """contextlib.suppress, without importing contextlib (and with it collections and
    functools: ~3 ms of every lowrun start)."""

    def __init__(self, *exceptions: type[BaseException]) -> None:
        self.exceptions = exceptions

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, value: object, tb: object) -> bool:
        return kind is not None and issubclass(kind, self.exceptions)
