"""Lifecycle hooks (runtime-spec config.md, "POSIX-platform Hooks").

A hook is a program run at one phase of a container's life with the container's state
as JSON on its stdin. lowrun runs each one with `os.posix_spawn` (no `subprocess`: it
costs ~11 ms to import, and most containers have no hooks, so this module imports
nothing else until a hook actually runs):

- argv is `args` (argv[0] included, as execv takes it), or just `path`;
- the environment is exactly `env` when given, else lowrun's own (as runc does);
- the hook runs in a process group of its own, with no file descriptor of lowrun's but
  the three pipes for stdin, stdout and stderr, and with default signal dispositions;
- `timeout` (seconds) bounds it: when it expires the whole process group is killed
  with SIGKILL and reaped (lowrun briefly becomes a child subreaper to adopt the
  hook's orphans), so nothing of the hook is left behind;
- a hook that cannot be started, exits non-zero, dies of a signal or times out raises
  `HookError` naming the phase, the hook's path and what happened, with the tail of its
  stderr. The hooks of one phase run in order; the first failure stops the phase.
"""

from __future__ import annotations

import os

from lowrun.errors import HookError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PHASES = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)

# Bytes of each output stream kept for error messages (the tail), and shown of it.
_KEEP = 64 * 1024
_SHOW = 1000


def state_for(config: dict[str, Any], container_id: str, status: str, pid: int,
              bundle: str) -> dict[str, Any]:
    """The container's OCI state, as every hook reads it on its stdin."""
    return {
        "ociVersion": config.get("ociVersion", ""),
        "id": container_id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": config.get("annotations") or {},
    }


def run_phase(config: dict[str, Any], phase: str, state: dict[str, Any]) -> None:
    """Run the config's hooks of `phase` (run_hooks of hooks_for)."""
    run_hooks(hooks_for(config, phase), state, phase)


def hooks_for(config: dict[str, Any], phase: str) -> list[dict[str, Any]]:
    """The hooks config.json lists for `phase` (empty when there are none)."""
    if phase not in PHASES:
        raise ValueError(f"unknown hook phase {phase!r}; expected one of {', '.join(PHASES)}")
    hooks = config.get("hooks") or {}
    return list(hooks.get(phase) or ())


def run_hooks(hooks: list[dict[str, Any]] | None, state: dict[str, Any], phase: str) -> None:
    """Run `hooks` one after the other, each with `state` as JSON on its stdin."""
    if not hooks:
        return
    from lowrun import jsonio

    payload = jsonio.dumps(state).encode()
    for hook in hooks:
        _run_one(hook, payload, phase)


class _Output:
    """The tail of one output stream of a hook."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = b""

    def add(self, chunk: bytes) -> None:
        self.data = (self.data + chunk)[-_KEEP:]

    def text(self) -> str:
        shown = self.data[-_SHOW:].decode("utf-8", "replace").strip()
        return ("..." + shown) if len(self.data) > _SHOW else shown


def _environment(hook: dict[str, Any]) -> dict[str, str]:
    entries = hook.get("env")
    if entries is None:
        return dict(os.environ)
    env: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        env[key] = value
    return env


def _inherited_fds(keep: set[int]) -> list[int]:
    """lowrun's inheritable descriptors (preserved fds, sockets) that a hook must not get."""
    leaked = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd in keep:
            continue
        try:
            if os.get_inheritable(fd):
                leaked.append(fd)
        except OSError:  # the descriptor listdir itself used
            continue
    return leaked


def _spawn(hook: dict[str, Any], stdin: int, stdout: int, stderr: int) -> int:
    import signal

    path: str = hook["path"]
    argv = list(hook.get("args") or [path])
    actions: list[tuple[int, int] | tuple[int, int, int]] = [
        (os.POSIX_SPAWN_DUP2, stdin, 0),
        (os.POSIX_SPAWN_DUP2, stdout, 1),
        (os.POSIX_SPAWN_DUP2, stderr, 2),
    ]
    actions.extend((os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds({stdin, stdout, stderr}))
    return os.posix_spawn(
        path,
        argv,
        _environment(hook),
        file_actions=actions,
        setpgroup=0,
        setsigmask=(),
        # Python ignores SIGPIPE and SIGXFSZ; an ignored signal survives exec.
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM),
    )


def _run_one(hook: dict[str, Any], payload: bytes, phase: str) -> None:
    path = hook.get("path", "?")
    timeout = hook.get("timeout")
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ours = {in_w, out_r, err_r}
    try:
        try:
            pid = _spawn(hook, in_r, out_w, err_w)
        except OSError as exc:
            raise HookError(f"{phase} hook {path}: cannot run it: {exc.strerror}") from None
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        stdout, stderr = _Output(), _Output()
        try:
            finished = _supervise(pid, in_w, {out_r: stdout, err_r: stderr}, payload, timeout, ours)
        except BaseException:
            _kill_group(pid)
            raise
    finally:
        for fd in ours:
            os.close(fd)
    if not finished:
        _kill_group(pid)
        raise HookError(
            f"{phase} hook {path} timed out after {timeout}s; it was killed with its "
            f"process group{_tail(stdout, stderr)}"
        )
    status = _reap(pid)
    if status != 0:
        raise HookError(f"{phase} hook {path} failed: {_describe(status)}{_tail(stdout, stderr)}")


def _supervise(
    pid: int,
    stdin: int,
    outputs: dict[int, _Output],
    payload: bytes,
    timeout: int | None,
    ours: set[int],
) -> bool:
    """Feed stdin, collect the outputs, until the hook exits (True) or time runs out.

    stdin is closed (and taken out of `ours`) as soon as the state is written, so that a
    hook reading to end of file goes on.
    """
    import select
    import time

    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        for fd in outputs:
            poller.register(fd, select.POLLIN)
        os.set_blocking(stdin, False)
        poller.register(stdin, select.POLLOUT)
        pending = memoryview(payload)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait_ms = -1
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wait_ms = int(left * 1000) + 1
            for fd, _events in poller.poll(wait_ms):
                if fd == pidfd:
                    _drain(outputs)
                    return True
                if fd == stdin:
                    pending = _feed(stdin, pending)
                    if not pending:
                        poller.unregister(stdin)
                        ours.discard(stdin)
                        os.close(stdin)
                elif not _read_into(fd, outputs[fd]):
                    poller.unregister(fd)
    finally:
        os.close(pidfd)


def _feed(fd: int, pending: memoryview) -> memoryview:
    """Write what the pipe takes; a hook that closed its stdin just gets no more."""
    try:
        written = os.write(fd, pending)
    except BlockingIOError:
        return pending
    except BrokenPipeError:
        return pending[:0]
    return pending[written:]


def _read_into(fd: int, output: _Output, stop_when_empty: bool = False) -> bool:
    """Read one chunk into `output`; False at end of file (or, if asked, when none is ready)."""
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return not stop_when_empty
    if not chunk:
        return False
    output.add(chunk)
    return True


def _drain(outputs: dict[int, _Output]) -> None:
    """Take what is left in the pipes without waiting: a hook's child may hold them open."""
    for fd, output in outputs.items():
        os.set_blocking(fd, False)
        while _read_into(fd, output, stop_when_empty=True):
            pass


def _kill_group(pid: int) -> None:
    """SIGKILL the hook's process group and reap all of it.

    lowrun is a child subreaper for the moment of the kill, so that the hook's own
    children, orphaned by its death, are reparented to lowrun and reaped here rather
    than left as zombies for an init that may be slow to reap them. Processes
    adopted that way which are not in the group move on when lowrun exits, to the
    same subreaper they would have reached anyway.
    """
    import signal

    from lowrun import syscalls

    was_subreaper = syscalls.is_child_subreaper()
    if not was_subreaper:
        syscalls.set_child_subreaper()
    try:
        try:  # noqa: SIM105 (contextlib would be one more import)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(pid)
        while True:  # every member is SIGKILLed: these waits end
            try:
                os.waitpid(-pid, 0)
            except ChildProcessError:
                break
    finally:
        if not was_subreaper:
            syscalls.clear_child_subreaper()


def _reap(pid: int) -> int:
    """The hook's wait status. If something else in lowrun reaped it first, its status is
    lost: count it as a success rather than blame the hook."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 0
    return status


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        import signal

        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _tail(stdout: _Output, stderr: _Output) -> str:
    parts = []
    if stderr.data:
        parts.append(f"stderr: {stderr.text()}")
    if stdout.data and not stderr.data:
        parts.append(f"stdout: {stdout.text()}")
    return "; " + "; ".join(parts) if parts else ""
