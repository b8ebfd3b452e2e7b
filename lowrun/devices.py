"""Device nodes in the container's /dev: runc's default set plus `linux.devices`.

Nodes are made with mknod relative to an fd of their directory (resolved inside the
rootfs). Where mknod is not allowed (a user namespace: only the initial namespace
may create device nodes), the host's node at the same path is bind-mounted onto an
empty file instead, as runc does.
"""

from __future__ import annotations

import errno
import os
import stat

from lowrun import safepath
from lowrun import syscalls as sc
from lowrun.errors import ConfigError, SyscallError
from lowrun.mounts import MountError, Record, clean_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


class Device(Record):
    """A node to create.

    kind: "c" (or "u", unbuffered char), "b" or "p", as in config.json;
    mode: permission bits only (the type comes from `kind`);
    label: how errors name it, `$.linux.devices[2] (/dev/fuse)` or `default device /dev/null`.
    """

    __slots__ = ("gid", "kind", "label", "major", "minor", "mode", "path", "uid")

    def __init__(
        self, path: str, kind: str, major: int, minor: int, mode: int, uid: int, gid: int,
        label: str,
    ) -> None:
        self.path = path
        self.kind = kind
        self.major = major
        self.minor = minor
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.label = label

    @property
    def node_type(self) -> int:
        return _TYPES[self.kind]

    @property
    def rdev(self) -> int:
        return os.makedev(self.major, self.minor) if self.kind != "p" else 0


def _default(path: str, major: int, minor: int) -> Device:
    return Device(path, "c", major, minor, 0o666, 0, 0, f"default device {path}")


DEFAULT_DEVICES: tuple[Device, ...] = (
    _default("/dev/null", 1, 3),
    _default("/dev/zero", 1, 5),
    _default("/dev/full", 1, 7),
    _default("/dev/random", 1, 8),
    _default("/dev/urandom", 1, 9),
    _default("/dev/tty", 5, 0),
)


def _int(entry: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = entry.get(key, default)
    if value is None:
        raise ConfigError(f"{where}.{key}", "required")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}.{key}", f"must be a non-negative integer, not {value!r}")
    return value


def parse_device(entry: Any, index: int) -> Device:
    """Check `$.linux.devices[index]` and turn it into a Device."""
    where = f"$.linux.devices[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(where, "a device must be an object")
    path = entry.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"{where}.path", "required, an absolute path")
    kind = entry.get("type")
    if kind not in _TYPES:
        raise ConfigError(f"{where}.type", f"must be one of c, u, b, p, not {kind!r}")
    needs_numbers = kind != "p"
    major = _int(entry, "major", where, None if needs_numbers else 0)
    minor = _int(entry, "minor", where, None if needs_numbers else 0)
    mode = _int(entry, "fileMode", where, 0o666)
    if mode & ~0o7777 and stat.S_IFMT(mode) != _TYPES[kind]:
        raise ConfigError(f"{where}.fileMode", f"{mode:#o} has a file type other than {kind}")
    uid = _int(entry, "uid", where, 0)
    gid = _int(entry, "gid", where, 0)
    path = clean_path(path)
    return Device(path, kind, major, minor, mode & 0o7777, uid, gid, f"{where} ({path})")


def devices_for(config: dict[str, Any]) -> list[Device]:
    """The default devices, then `linux.devices`; a configured path replaces a default."""
    configured = [
        parse_device(entry, i)
        for i, entry in enumerate((config.get("linux") or {}).get("devices") or [])
    ]
    paths = {d.path for d in configured}
    return [d for d in DEFAULT_DEVICES if d.path not in paths] + configured


def _matches(st: os.stat_result, device: Device) -> bool:
    return stat.S_IFMT(st.st_mode) == device.node_type and (
        device.kind == "p" or st.st_rdev == device.rdev
    )


def _bind_host_node(rootfd: int, device: Device) -> None:
    """Bind the host's node at the same path onto an empty file (mknod not permitted)."""
    if not os.path.exists(device.path):
        raise MountError(errno.ENOENT, "bind from host", device.label, device.path)
    fd = safepath.ensure(rootfd, device.path, kind="file", mode=0o600)
    try:
        sc.mount(device.path, sc.fd_path(fd), None, sc.MS_BIND)
    finally:
        os.close(fd)


def create_device(rootfd: int, device: Device) -> None:
    """Create one node; an existing node that matches is kept, a mismatching one refused.

    Defaults follow runc: whatever exists at their path is kept as it is.
    """
    parent_path, name = os.path.split(device.path)
    parent = safepath.ensure(rootfd, parent_path, kind="dir")
    try:
        try:
            existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            if _matches(existing, device) or device.label.startswith("default"):
                return
            raise ConfigError(
                device.label.split(" ")[0] + ".path",
                f"{device.path} already exists and is not that device",
            )
        old_umask = os.umask(0)
        try:
            os.mknod(name, device.node_type | device.mode, device.rdev, dir_fd=parent)
        except PermissionError:
            if device.kind == "p":
                raise MountError(errno.EPERM, "mknod", device.label) from None
            _bind_host_node(rootfd, device)
            return
        except OSError as exc:
            raise MountError(exc.errno or errno.EIO, "mknod", device.label) from None
        finally:
            os.umask(old_umask)
        try:
            os.chown(name, device.uid, device.gid, dir_fd=parent, follow_symlinks=False)
        except OSError as exc:
            raise MountError(exc.errno or errno.EIO, "chown", device.label) from None
    except SyscallError as exc:
        if isinstance(exc, MountError):
            raise
        raise MountError(exc.errno or errno.EIO, exc.call, device.label, exc.what) from None
    finally:
        os.close(parent)


def create_devices(rootfd: int, devices: list[Device]) -> None:
    for device in devices:
        create_device(rootfd, device)
