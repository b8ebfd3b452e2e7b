"""The container process: rlimits, user, working directory, fds, and the final execve."""

from __future__ import annotations

import fcntl
import os
import resource

from lowrun.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def apply_rlimits(rlimits: list[dict[str, Any]] | None) -> None:
    for i, limit in enumerate(rlimits or []):
        name = limit.get("type", "")
        number = getattr(resource, name, None)
        if not isinstance(number, int) or not name.startswith("RLIMIT_"):
            raise ConfigError(f"$.process.rlimits[{i}].type", f"unknown rlimit {name!r}")
        soft, hard = int(limit["soft"]), int(limit["hard"])
        try:
            resource.setrlimit(number, (soft, hard))
        except (ValueError, OSError) as exc:
            raise ConfigError(
                f"$.process.rlimits[{i}]", f"cannot set {name} to {soft}/{hard}: {exc}"
            ) from None


def set_oom_score_adj(pid: int | str, value: int | None) -> None:
    if value is None:
        return
    with open(f"/proc/{pid}/oom_score_adj", "w") as f:
        f.write(str(value))


def set_user(user: dict[str, Any]) -> None:
    """setgroups, setgid, setuid: in that order, while the process may still do so."""
    uid = int(user.get("uid", 0))
    gid = int(user.get("gid", 0))
    groups = [int(g) for g in user.get("additionalGids") or []]
    try:
        os.setgroups(groups)
    except PermissionError:
        # A user namespace with setgroups denied: only an empty list would be allowed.
        if groups:
            raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def set_umask(user: dict[str, Any]) -> None:
    umask = user.get("umask")
    os.umask(0o022 if umask is None else int(umask))


def env_path(env: list[str]) -> str:
    for entry in env:
        if entry.startswith("PATH="):
            return entry[5:]
    return DEFAULT_PATH


def find_executable(name: str, env: list[str]) -> str:
    """Resolve args[0] as execvpe would, in the current root; raise if it cannot run."""
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in env_path(env).split(":")]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError("$.process.args[0]", f"executable {name!r} not found in the container")


def change_dir(cwd: str) -> None:
    """chdir inside the new root and make sure the result really is inside it."""
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise ConfigError("$.process.cwd", f"cannot chdir to {cwd}: {exc.strerror}") from None
    try:
        here = os.getcwd()
    except OSError:
        here = "(unreachable)"
    if not here.startswith("/"):
        raise ConfigError("$.process.cwd", f"{cwd} resolves outside the container: {here}")


def cloexec_from(first: int) -> None:
    """Mark every fd >= first close-on-exec, so that no host fd reaches the container."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < first:
            continue
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        except OSError:
            continue


def close_inherited_from(first: int) -> None:
    """Close every inheritable fd >= first: what the runtime's caller leaked to it.

    Python opens its own fds close-on-exec (PEP 446), so an inheritable fd past stdio
    and --preserve-fds can only come from the caller. Closed before anything is forked,
    no stage of the runtime holds it while it is inside the container, where a process
    with CAP_SYS_PTRACE could take it through /proc/PID/fd (the CVE-2024-21626 class).
    """
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < first:
            continue
        try:
            if os.get_inheritable(fd):
                os.close(fd)
        except OSError:
            continue


def exec_process(executable: str, args: list[str], env: list[str]) -> None:
    environ = dict(e.partition("=")[::2] for e in env)
    os.execve(executable, args, environ)


def reap_exited_children() -> None:
    """Collect every child that has already exited, without waiting for the others."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
