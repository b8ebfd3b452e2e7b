"""File operations on cgroupfs, behind one small class so that unit tests can swap in a fake.

Control files are never created: a write to a file the kernel does not offer fails
with ENOENT, as it would on the real cgroupfs. Every failure becomes a CgroupError
that names the file, the value, the config field it came from, and keeps the errno.
"""

from __future__ import annotations

import errno as errno_mod
import os
import time

from lowrun.cgroups import CgroupError

BUSY_TIMEOUT = 1.0


class CgroupFs:
    """The real kernel interface: plain system calls on the cgroup filesystem."""

    def mkdir(self, path: str) -> bool:
        """Create one directory; False if it already existed."""
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            return False
        return True

    def write(self, path: str, value: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def read(self, path: str) -> str:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode()

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def attach_device_program(self, path: str, code: bytes) -> None:
        """Replace the cgroup v2 device filter of `path` with the eBPF program `code`."""
        from lowrun.cgroups.ebpf import replace_device_program

        replace_device_program(path, code)

    def subdirs(self, path: str) -> list[str]:
        with os.scandir(path) as entries:
            return [e.path for e in entries if e.is_dir(follow_symlinks=False)]


def write_value(fs: CgroupFs, directory: str, name: str, value: str, field: str | None) -> None:
    """Write one control file; failures name the file, the value and the config field."""
    path = os.path.join(directory, name)
    try:
        fs.write(path, value)
    except OSError as e:
        code = e.errno or 0
        reason = os.strerror(code) if code else str(e)
        if code == errno_mod.ENOENT:
            reason = "the kernel offers no such file here (controller or feature missing)"
        raise CgroupError(
            f"cannot write {value!r} to {path}: {reason}", field=field, path=path, errno=code
        ) from e


def read_value(fs: CgroupFs, directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    try:
        return fs.read(path).strip()
    except OSError as e:
        raise CgroupError(
            f"cannot read {path}: {os.strerror(e.errno or 0)}", path=path, errno=e.errno
        ) from e


def read_optional(fs: CgroupFs, directory: str, name: str) -> str | None:
    """The file's content, or None when the kernel does not offer the file."""
    path = os.path.join(directory, name)
    try:
        return fs.read(path).strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CgroupError(
            f"cannot read {path}: {os.strerror(e.errno or 0)}", path=path, errno=e.errno
        ) from e


def parse_uint(text: str, path: str) -> int:
    """A counter or limit; "max" (v2's unlimited) reads as 2**64-1 like runc reports it."""
    text = text.strip()
    if text == "max":
        return 2**64 - 1
    try:
        value = int(text)
    except ValueError:
        raise CgroupError(f"cannot parse {text!r} in {path} as a number", path=path) from None
    # v1 reports "no limit" as a page-rounded huge number or -1 in a few files.
    return max(value, 0)


def read_uint(fs: CgroupFs, directory: str, name: str) -> int | None:
    text = read_optional(fs, directory, name)
    if text is None or text == "":
        return None
    return parse_uint(text, os.path.join(directory, name))


def read_keyed(fs: CgroupFs, directory: str, name: str) -> dict[str, int]:
    """A flat-keyed file ("key value" per line, e.g. memory.stat, cpu.stat); {} if absent."""
    text = read_optional(fs, directory, name)
    result: dict[str, int] = {}
    if not text:
        return result
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                result[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return result


def write_pid(fs: CgroupFs, directory: str, pid: int) -> None:
    """Move `pid` into the cgroup; EINVAL right after fork is retried, as runc does."""
    path = os.path.join(directory, "cgroup.procs")
    for attempt in range(5):
        try:
            fs.write(path, str(pid))
            return
        except OSError as e:
            if e.errno == errno_mod.EINVAL and attempt < 4:
                time.sleep(0.03)
                continue
            raise CgroupError(
                f"cannot move pid {pid} into {directory}: {os.strerror(e.errno or 0)}",
                path=path,
                errno=e.errno,
            ) from e


def make_dirs(fs: CgroupFs, base: str, path: str) -> list[str]:
    """mkdir -p below `base` (which must exist); returns the directories it created."""
    rel = os.path.relpath(path, base)
    if rel.startswith(".."):
        raise CgroupError(f"cgroup {path} is not below {base}", path=path)
    created: list[str] = []
    current = base
    if rel == ".":
        return created
    for part in rel.split("/"):
        current = os.path.join(current, part)
        try:
            if fs.mkdir(current):
                created.append(current)
        except OSError as e:
            raise CgroupError(
                f"cannot create cgroup {current}: {os.strerror(e.errno or 0)}",
                path=current,
                errno=e.errno,
            ) from e
    return created


def remove_tree(fs: CgroupFs, path: str, *, deadline: float | None = None) -> None:
    """rmdir a cgroup and its sub-cgroups, deepest first; EBUSY is retried until `deadline`.

    EBUSY means a process is still exiting in it (the caller kills them first); the
    default deadline is one second from now, and callers removing several hierarchies
    share one deadline. A directory already gone is success.
    """
    if deadline is None:
        deadline = time.monotonic() + BUSY_TIMEOUT
    try:
        children = fs.subdirs(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise CgroupError(
            f"cannot list {path}: {os.strerror(e.errno or 0)}", path=path, errno=e.errno
        ) from e
    for child in children:
        remove_tree(fs, child, deadline=deadline)
    delay = 0.002
    while True:
        try:
            fs.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno == errno_mod.EBUSY and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            raise CgroupError(
                f"cannot remove cgroup {path}: {os.strerror(e.errno or 0)}",
                path=path,
                errno=e.errno,
            ) from e


def all_pids(fs: CgroupFs, path: str) -> list[int]:
    """Pids in cgroup.procs of `path` and every sub-cgroup; [] when `path` is gone."""
    pids: list[int] = []
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            text = fs.read(os.path.join(current, "cgroup.procs"))
            children = fs.subdirs(current)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise CgroupError(
                f"cannot read the pids of {current}: {os.strerror(e.errno or 0)}",
                path=current,
                errno=e.errno,
            ) from e
        pids.extend(int(line) for line in text.split() if line.isdigit())
        stack.extend(children)
    return sorted(set(pids))
