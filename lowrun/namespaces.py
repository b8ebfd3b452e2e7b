"""Linux namespaces: the OCI type names, their clone flags, and how to enter them."""

from __future__ import annotations

import os

from lowrun import syscalls
from lowrun.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FLAGS: dict[str, int] = {
    "user": syscalls.CLONE_NEWUSER,
    "pid": syscalls.CLONE_NEWPID,
    "network": syscalls.CLONE_NEWNET,
    "ipc": syscalls.CLONE_NEWIPC,
    "uts": syscalls.CLONE_NEWUTS,
    "mount": syscalls.CLONE_NEWNS,
    "cgroup": syscalls.CLONE_NEWCGROUP,
    "time": syscalls.CLONE_NEWTIME,
}

PROC_NAMES: dict[str, str] = {
    "user": "user",
    "pid": "pid",
    "network": "net",
    "ipc": "ipc",
    "uts": "uts",
    "mount": "mnt",
    "cgroup": "cgroup",
    "time": "time",
}

# The order in which namespaces are joined: user first (it grants the rights to join
# the others), mount last among those a process can switch to freely.
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


class NamespacePlan:
    """What the init must do with namespaces: which to create, which to join by path."""

    __slots__ = ("join", "new")

    def __init__(self, new: frozenset[str], join: dict[str, str]) -> None:
        self.new = new
        self.join = join

    def has(self, ns_type: str) -> bool:
        return ns_type in self.new or ns_type in self.join

    def unshare_flags(self, exclude: tuple[str, ...] = ()) -> int:
        flags = 0
        for ns_type in self.new:
            if ns_type not in exclude:
                flags |= FLAGS[ns_type]
        return flags


def plan(config: dict[str, Any]) -> NamespacePlan:
    entries = (config.get("linux") or {}).get("namespaces") or []
    new: set[str] = set()
    join: dict[str, str] = {}
    for i, entry in enumerate(entries):
        ns_type = entry.get("type")
        if ns_type not in FLAGS:
            raise ConfigError(f"$.linux.namespaces[{i}].type", f"unknown namespace {ns_type!r}")
        path = entry.get("path")
        if path:
            join[ns_type] = path
        else:
            new.add(ns_type)
    return NamespacePlan(frozenset(new), join)


def open_paths(join: dict[str, str]) -> list[tuple[str, int]]:
    """Open every namespace to join, in JOIN_ORDER, before entering any of them."""
    opened: list[tuple[str, int]] = []
    for ns_type in JOIN_ORDER:
        path = join.get(ns_type)
        if path is None:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            for _, other in opened:
                os.close(other)
            raise ConfigError(
                f"$.linux.namespaces[type={ns_type}].path", f"cannot open {path}: {exc.strerror}"
            ) from None
        opened.append((ns_type, fd))
    return opened


def enter(opened: list[tuple[str, int]]) -> None:
    """setns into each opened namespace, closing the fds."""
    for ns_type, fd in opened:
        try:
            syscalls.setns(fd, FLAGS[ns_type], what=f"{ns_type} namespace")
        finally:
            os.close(fd)


def paths_of(pid: int, types: list[str] | frozenset[str]) -> dict[str, str]:
    return {t: f"/proc/{pid}/ns/{PROC_NAMES[t]}" for t in types}


def same_as_self(pid: int, ns_type: str) -> bool:
    """True if process `pid` shares the caller's namespace of `ns_type`."""
    name = PROC_NAMES[ns_type]
    try:
        return os.stat(f"/proc/{pid}/ns/{name}").st_ino == os.stat(f"/proc/self/ns/{name}").st_ino
    except FileNotFoundError:
        return True
