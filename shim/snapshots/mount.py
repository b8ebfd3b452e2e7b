"""Mount a snapshot's OCI mount list on the host (to unpack into, inspect or export it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from lowrun import syscalls as sc
from shim.snapshots.overlay import Mount

_FLAGS = {
    "ro": sc.MS_RDONLY, "nosuid": sc.MS_NOSUID, "nodev": sc.MS_NODEV,
    "noexec": sc.MS_NOEXEC, "bind": sc.MS_BIND, "rbind": sc.MS_BIND | sc.MS_REC,
}


def mount_all(mounts: list[Mount], target: Path) -> None:
    """Mount each entry on `target`, in order (a snapshot has one)."""
    for m in mounts:
        flags = 0
        data = []
        for opt in m.get("options", []):
            if opt in _FLAGS:
                flags |= _FLAGS[opt]
            elif opt != "rw":
                data.append(opt)
        fstype = None if flags & sc.MS_BIND else m["type"]
        sc.mount(m["source"], str(target), fstype, flags & ~sc.MS_RDONLY if flags & sc.MS_BIND
                 else flags, ",".join(data) or None)
        if flags & sc.MS_BIND and flags & sc.MS_RDONLY:
            sc.mount(None, str(target), None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


def unmount(target: Path) -> None:
    sc.umount2(str(target), sc.MNT_DETACH)


@contextlib.contextmanager
def mounted(mounts: list[Mount], target: Path) -> Iterator[Path]:
    """The snapshot mounted on `target` for the duration of the block."""
    target.mkdir(parents=True, exist_ok=True)
    mount_all(mounts, target)
    try:
        yield target
    finally:
        unmount(target)
