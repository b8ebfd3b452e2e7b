"""The default config.json that `lowrun spec` writes: what `runc spec` (runc 1.1.5) writes,
field for field and in the same order, except `ociVersion`, which is the version of the
runtime-spec lowrun implements.

`rootless=True` is refused with a `UsageError`: runc's rootless spec is for a runtime run
by an unprivileged user (its uid mapped to root in a user namespace, cgroup errors
tolerated, state kept under $XDG_RUNTIME_DIR), and lowrun only runs as root, so it could
not run the spec it wrote.
"""

from __future__ import annotations

from lowrun import OCI_VERSION
from lowrun.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_CAPS = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")

_MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)

_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def _mount(destination: str, kind: str, source: str, *options: str) -> dict[str, Any]:
    mount: dict[str, Any] = {"destination": destination, "type": kind, "source": source}
    if options:
        mount["options"] = list(options)
    return mount


def default_spec(rootless: bool = False) -> dict[str, Any]:
    """A fresh default config (a new dict each call: callers may change it)."""
    if rootless:
        raise UsageError(
            "spec --rootless: lowrun does not support rootless containers (it runs as "
            "root only: no unprivileged user namespace setup, cgroup delegation or "
            "per-user state directory); run lowrun as root and use `lowrun spec` "
            "without --rootless"
        )
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                s: list(_CAPS) for s in ("bounding", "effective", "permitted", "ambient")
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            _mount("/proc", "proc", "proc"),
            _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
            _mount(
                "/dev/pts", "devpts", "devpts",
                "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5",
            ),
            _mount(
                "/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"
            ),
            _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
            _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
            _mount(
                "/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"
            ),
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount")
            ],
            "maskedPaths": list(_MASKED_PATHS),
            "readonlyPaths": list(_READONLY_PATHS),
        },
    }
