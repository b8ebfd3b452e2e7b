"""The bundle writer: a default spec as strict as docker's, merged with what a caller asks.

`default_spec()` is what `docker run` gives a container without flags: docker's 14
capabilities, its masked and read-only paths, a device cgroup that denies all but the
standard character devices, new pid/ipc/uts/mount/network namespaces, and docker's
seccomp profile (from `shim.seccomp_profile`).
`merge_spec()` applies a caller's partial spec on top (objects merged key by key,
arrays replaced, null removes a key). `mount_rootfs()` builds the root filesystem of a
task from a list of mounts (bind or overlay), as containerd's rootfs mounts.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

from shim.errors import InvalidArgument
from shim.seccomp_profile import DOCKER_DEFAULT_CAPABILITIES, default_seccomp_profile

log = logging.getLogger(__name__)

DEFAULT_CAPABILITIES = list(DOCKER_DEFAULT_CAPABILITIES)
"""docker's default capabilities (shim.seccomp_profile keeps the one list)."""

MASKED_PATHS = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]

READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _dev(kind: str, major: int | None, minor: int | None, access: str = "rwm") -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return rule


DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    _dev("c", None, None, "m"),
    _dev("b", None, None, "m"),
    _dev("c", 1, 3),  # null
    _dev("c", 1, 8),  # random
    _dev("c", 1, 7),  # full
    _dev("c", 5, 0),  # tty
    _dev("c", 1, 5),  # zero
    _dev("c", 1, 9),  # urandom
    _dev("c", 5, 1),  # console
    _dev("c", 136, None),  # pts
    _dev("c", 5, 2),  # ptmx
    _dev("c", 10, 200),  # tun
]

DEFAULT_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
]


def _seccomp(capabilities: list[str]) -> dict[str, Any] | None:
    """Docker's default seccomp profile for these capabilities."""
    profile: dict[str, Any] = default_seccomp_profile(capabilities)
    return profile


def default_spec(
    args: list[str] | None = None,
    *,
    hostname: str = "",
    env: list[str] | None = None,
    cwd: str = "/",
    terminal: bool = False,
    netns_path: str = "",
    seccomp: bool = True,
) -> dict[str, Any]:
    """The spec `docker run IMAGE ARGS` would give, without the image's config."""
    caps = list(DEFAULT_CAPABILITIES)
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args or []),
            "env": [f"PATH={DEFAULT_PATH}", *(env or [])],
            "cwd": cwd,
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "mounts": copy.deepcopy(DEFAULT_MOUNTS),
        "linux": {
            "resources": {"devices": copy.deepcopy(DEVICE_RULES)},
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network", **({"path": netns_path} if netns_path else {})},
            ],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if hostname:
        spec["hostname"] = hostname
    if terminal:
        spec["process"]["env"].append("TERM=xterm")
    if seccomp:
        profile = _seccomp(caps)
        if profile is not None:
            spec["linux"]["seccomp"] = profile
    return spec


def merge_spec(base: Any, overlay: Any) -> Any:
    """`overlay` applied onto `base`: objects merged, arrays and scalars replaced,
    a null in `overlay` removes the key. Neither argument is modified."""
    if not isinstance(base, dict) or not isinstance(overlay, dict):
        return copy.deepcopy(overlay)
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_spec(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_spec(spec: dict[str, Any]) -> None:
    """The few things shimd needs from a spec before handing it to the runtime, which
    validates the rest; raises InvalidArgument naming the field."""
    process = spec.get("process")
    if not isinstance(process, dict):
        raise InvalidArgument("spec $.process is missing: a container needs a process to run")
    args = process.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise InvalidArgument("spec $.process.args must be a non-empty list of strings")
    if not isinstance(process.get("cwd", "/"), str) or not process.get("cwd", "/").startswith("/"):
        raise InvalidArgument("spec $.process.cwd must be an absolute path")
    if not isinstance(spec.get("ociVersion"), str):
        raise InvalidArgument("spec $.ociVersion must be a string such as '1.0.2'")
    root = spec.get("root")
    if root is not None and not isinstance(root, dict):
        raise InvalidArgument("spec $.root must be an object with a path")


def write_config(bundle: Path, spec: dict[str, Any]) -> Path:
    """Write `bundle/config.json` atomically."""
    path = bundle / "config.json"
    tmp = bundle / ".config.json.tmp"
    with tmp.open("w") as fh:
        json.dump(spec, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


# ---- the root filesystem ------------------------------------------------------------

_BIND_ONLY = {"bind", "rbind", "rw"}


def rootfs_without_mount(mounts: list[dict[str, Any]]) -> str | None:
    """A single plain bind mount needs no mount at all: the runtime can use its source."""
    if len(mounts) != 1 or mounts[0].get("type") != "bind":
        return None
    if not set(mounts[0].get("options") or []) <= _BIND_ONLY:
        return None
    source = str(mounts[0].get("source", ""))
    if not os.path.isabs(source) or not os.path.isdir(source):
        raise InvalidArgument(
            f"rootfs bind source {source!r} must be an existing absolute directory"
        )
    return source


def mount_rootfs(mounts: list[dict[str, Any]], target: Path) -> None:
    """Mount `mounts` in order on `target` (bind or overlay); undone on failure."""
    from lowrun import syscalls as sc
    from lowrun.errors import LowrunError

    target.mkdir(parents=True, exist_ok=True)
    done = 0
    try:
        for m in mounts:
            kind = m.get("type", "")
            options = [str(o) for o in (m.get("options") or [])]
            source = str(m.get("source", ""))
            if kind == "bind":
                if not os.path.isdir(source):
                    raise InvalidArgument(f"rootfs bind source {source!r} is not a directory")
                flags = sc.MS_BIND | (sc.MS_REC if "rbind" in options else 0)
                sc.mount(source, str(target), None, flags)
                done += 1
                if "ro" in options:
                    sc.mount(None, str(target), None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)
            elif kind == "overlay":
                sc.mount("overlay", str(target), "overlay", 0, ",".join(options))
                done += 1
            else:
                raise InvalidArgument(
                    f"rootfs mount type {kind!r} is not supported: use 'bind' or 'overlay'"
                )
    except LowrunError as exc:
        _unmount(target, done)
        raise InvalidArgument(f"cannot mount the rootfs on {target}: {exc}") from exc
    except BaseException:
        _unmount(target, done)
        raise


def _unmount(target: Path, count: int) -> None:
    from lowrun import syscalls as sc

    for _ in range(count):
        sc.umount2(str(target), sc.MNT_DETACH)


def is_mountpoint(path: Path) -> bool:
    needle = str(path)
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == needle for line in fh)


def unmount_rootfs(target: Path) -> None:
    """Undo every mount on `target` (a task's rootfs), tolerating none."""
    from lowrun import syscalls as sc

    for _ in range(16):
        if not target.exists() or not is_mountpoint(target):
            return
        sc.umount2(str(target), sc.MNT_DETACH)
    log.warning("rootfs %s still mounted after 16 unmounts", target)
