"""shimctl: containers, tasks and events of a shimd, from the command line.

    shimctl [--address SOCK] [-n NAMESPACE] run [--rm] [-d] [-t] [-i] [--runtime BIN]
            [--env K=V] [--cwd DIR] [--log PATH] (--rootfs DIR ID CMD... | --image REF ID [CMD...])
    shimctl containers ls | rm ID...
    shimctl tasks ls | kill [-s SIG] [--all] [--exec-id E] ID | rm [-f] ID
                 | exec [-t] [-i] [-d] --exec-id E ID CMD... | pause ID | resume ID
                 | stats ID | ps ID
    shimctl events [--replay] [FILTER...]
    shimctl version

`run` and `tasks exec` without -d attach to the process and exit with its status.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import IO, Any

from shim import namespaces
from shim.client import DEFAULT_ADDRESS, STATUS_NAMES, Client, LogConfig, Mount, Stdio
from shim.errors import ShimError


def _signal_number(text: str) -> int:
    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise argparse.ArgumentTypeError(f"unknown signal {text!r}") from None


# ---- attaching to a process's stdio -----------------------------------------------------

class Attachment:
    """Fifos in a private directory, copied to and from this process's stdio."""

    def __init__(self, terminal: bool, interactive: bool) -> None:
        self.terminal = terminal
        self.dir = tempfile.mkdtemp(prefix="shimctl-")
        self.stdin = os.path.join(self.dir, "stdin") if interactive else ""
        self.stdout = os.path.join(self.dir, "stdout")
        self.stderr = "" if terminal else os.path.join(self.dir, "stderr")
        for path in (self.stdin, self.stdout, self.stderr):
            if path:
                os.mkfifo(path, 0o600)
        self.threads: list[threading.Thread] = []

    @property
    def stdio(self) -> Stdio:
        return Stdio(stdin=self.stdin, stdout=self.stdout, stderr=self.stderr,
                     terminal=self.terminal)

    def connect(self, on_stdin_eof: Any) -> None:
        """Copy between the fifos and our stdio, on threads that open each fifo once
        the monitor has opened its end (at create, or at the start of an exec)."""
        self._copy_out(self.stdout, sys.stdout.buffer)
        if self.stderr:
            self._copy_out(self.stderr, sys.stderr.buffer)
        if self.stdin:
            path = self.stdin

            def feed() -> None:
                fd = os.open(path, os.O_WRONLY)  # once the monitor opened its end
                try:
                    while True:
                        data = os.read(sys.stdin.fileno(), 65536)
                        if not data:
                            break
                        os.write(fd, data)
                except OSError:
                    pass
                finally:
                    os.close(fd)
                    on_stdin_eof()

            threading.Thread(target=feed, daemon=True).start()

    def _copy_out(self, path: str, out: IO[bytes]) -> None:
        def copy() -> None:
            fd = os.open(path, os.O_RDONLY)  # once the monitor opened its end
            try:
                while True:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    out.write(data)
                    out.flush()
            finally:
                os.close(fd)

        t = threading.Thread(target=copy, daemon=True)
        t.start()
        self.threads.append(t)

    def finish(self, timeout: float = 5.0) -> None:
        for t in self.threads:
            t.join(timeout)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(sys.stdin.fileno())
    tty.setraw(sys.stdin.fileno())
    try:
        yield
    finally:
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


def _follow_size(client: Client, cid: str, exec_id: str) -> None:
    if not sys.stdout.isatty():
        return

    def resize(*_: object) -> None:
        size = shutil.get_terminal_size()
        with contextlib.suppress(ShimError):
            client.resize_pty(cid, size.columns, size.lines, exec_id=exec_id)

    resize()
    signal.signal(signal.SIGWINCH, resize)


def _forward_signals(client: Client, cid: str, exec_id: str) -> None:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ShimError):
            client.kill(cid, signum, exec_id=exec_id)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)


def _attached(client: Client, cid: str, exec_id: str, attach: Attachment) -> int:
    """Start the created process, copy its stdio until it exits; its exit status."""
    attach.connect(lambda: _close_io(client, cid, exec_id))
    with raw_terminal(attach.terminal):
        client.start(cid, exec_id)
        if attach.terminal:
            _follow_size(client, cid, exec_id)
        else:
            _forward_signals(client, cid, exec_id)
        status = client.wait(cid, exec_id)
        attach.finish()
    return status.exit_status


def _close_io(client: Client, cid: str, exec_id: str) -> None:
    with contextlib.suppress(ShimError):
        client.close_io(cid, exec_id)


# ---- commands ---------------------------------------------------------------------------

def cmd_run(client: Client, args: argparse.Namespace) -> int:
    if args.image:
        return _run_image(client, args)
    if not args.command:
        raise ShimError("run needs a command to run in the container")
    spec: dict[str, Any] = {"process": {"args": args.command, "terminal": args.tty}}
    if args.env:
        spec["process"]["env"] = [f"PATH={_default_path()}", *args.env]
    if args.cwd:
        spec["process"]["cwd"] = args.cwd
    client.create_container(args.id, spec, runtime=args.runtime or "")
    return _run_task(client, args, [Mount("bind", os.path.abspath(args.rootfs))])


def _run_task(client: Client, args: argparse.Namespace, rootfs: list[Mount],
              on_remove: Any = None) -> int:
    """Create and start the created container's task (attached unless -d); with --rm,
    or when no task came of it, remove the container (then call `on_remove`)."""
    log = LogConfig(os.path.abspath(args.log), args.log_max_size, args.log_max_files) \
        if args.log else None
    try:
        if args.detach:
            client.create_task(args.id, rootfs=rootfs, stdio=Stdio(terminal=args.tty), log=log)
            client.start(args.id)
            return 0
        attach = Attachment(args.tty, args.interactive or args.tty)
        try:
            client.create_task(args.id, rootfs=rootfs, stdio=attach.stdio, log=log)
            status = _attached(client, args.id, "", attach)
        finally:
            attach.finish(0)
    except BaseException:
        if args.rm or not client.list_tasks(f"id=={args.id}"):
            _remove(client, args.id, on_remove)  # a container whose task never came is no use
        raise
    if args.rm:
        _remove(client, args.id, on_remove)
    return status


def _run_image(client: Client, args: argparse.Namespace) -> int:
    """`run --image`: the rootfs an overlay snapshot of the image, prepared in shimd and
    mounted by it at task creation (no rootfs mounts in Tasks.Create); the process
    from the image config, as docker run makes it."""
    from shim.errors import AlreadyExists, NotFound
    from shim.images.remote import ImagesClient

    images = ImagesClient(client.channel, client.namespace)
    with contextlib.suppress(NotFound):
        client.get_container(args.id)
        raise AlreadyExists(f"container {args.id!r} exists in namespace "
                            f"{client.namespace!r}: remove it or choose another id")
    # A snapshot NS/ID without its container is an orphan of a run that died before
    # creating it: a new container starts from the image, not from that upperdir.
    images.release_container_rootfs(args.id)
    try:
        prepared = images.prepare_container_rootfs(args.image, args.id)
    except NotFound as exc:
        raise NotFound(f"{exc}: pull, load or import it first (shimctl images pull|load|"
                       "import|busybox)") from None

    def release() -> None:
        with contextlib.suppress(ShimError):
            images.release_container_rootfs(args.id)

    try:
        spec = _image_spec(images, prepared, args)
        client.create_container(args.id, spec, runtime=args.runtime or "",
                                image=prepared.image, snapshot_key=prepared.snapshot_key)
    except AlreadyExists:
        raise  # a container of that id came meanwhile: its snapshot is not ours to drop
    except BaseException:
        release()
        raise
    return _run_task(client, args, [], on_remove=release)


def _image_spec(images: Any, prepared: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The container's process: Entrypoint + (CMD or the image's Cmd), the image's Env
    with --env on top (and a PATH if neither has one), WorkingDir unless --cwd, User."""
    from shim.images.resolve import resolve_manifest
    from shim.images.user import resolve_image_user

    config = prepared.config
    argv = config.args(args.command or None)
    if not argv:
        raise ShimError(f"image {prepared.image} has no Entrypoint or Cmd: "
                        "give the command to run after the container id")
    env = _merge_env(config.env, args.env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, f"PATH={_default_path()}")
    process: dict[str, Any] = {"args": argv, "env": env, "terminal": args.tty,
                               "cwd": args.cwd or config.working_dir or "/"}
    if config.user:
        image = images.images.get(images.namespace, prepared.image)
        manifest = resolve_manifest(images.content, image.target)
        user = resolve_image_user(images.content, manifest, config.user,
                                  where=f"image {prepared.image}")
        if user is not None:
            process["user"] = user.spec()
    return {"process": process}


def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    """`extra` over `base`: a variable set in both keeps its place and takes the new value."""
    merged: dict[str, str] = {}
    for item in [*base, *extra]:
        name = item.partition("=")[0]
        merged[name] = item
    return list(merged.values())


def _default_path() -> str:
    from shim.bundle import DEFAULT_PATH

    return DEFAULT_PATH


def _remove(client: Client, cid: str, then: Any = None) -> None:
    with contextlib.suppress(ShimError):
        client.delete_task(cid, force=True)
    with contextlib.suppress(ShimError):
        client.delete_container(cid)
    if then is not None:
        then()  # shimd removes an image container's snapshot itself; this covers an older one


def cmd_containers_ls(client: Client, args: argparse.Namespace) -> int:
    rows = [("ID", "IMAGE", "RUNTIME", "LABELS")]
    for c in client.list_containers(*args.filters):
        labels = ",".join(f"{k}={v}" for k, v in sorted(c.labels.items()))
        rows.append((c.id, c.image or "-", c.runtime.name or "(default)", labels or "-"))
    _table(rows, args.quiet)
    return 0


def cmd_containers_rm(client: Client, args: argparse.Namespace) -> int:
    status = 0
    for cid in args.ids:
        try:
            client.delete_container(cid)
        except ShimError as exc:
            print(f"shimctl: {exc}", file=sys.stderr)
            status = 1
    return status


def cmd_tasks_ls(client: Client, args: argparse.Namespace) -> int:
    rows = [("TASK", "PID", "STATUS", "EXIT")]
    for t in client.list_tasks(*args.filters):
        status = STATUS_NAMES.get(t.status, "unknown").upper()
        exit_status = str(t.exit_status) if status == "STOPPED" else "-"
        rows.append((t.container_id, str(t.pid), status, exit_status))
    _table(rows, args.quiet)
    return 0


def cmd_tasks_kill(client: Client, args: argparse.Namespace) -> int:
    client.kill(args.id, args.signal, exec_id=args.exec_id, all=args.all)
    return 0


def cmd_tasks_rm(client: Client, args: argparse.Namespace) -> int:
    resp = client.delete_task(args.id, exec_id=args.exec_id, force=args.force)
    print(f"{args.id}: exit status {resp.exit_status}", file=sys.stderr)
    return 0


def cmd_tasks_exec(client: Client, args: argparse.Namespace) -> int:
    if not args.command:
        raise ShimError("exec needs a command to run in the container")
    process = {"args": args.command, "terminal": args.tty}
    if args.env:
        process["env"] = args.env
    if args.detach:
        client.exec(args.id, args.exec_id, process, Stdio(terminal=args.tty))
        client.start(args.id, args.exec_id)
        return 0
    attach = Attachment(args.tty, args.interactive or args.tty)
    try:
        client.exec(args.id, args.exec_id, process, attach.stdio)
        status = _attached(client, args.id, args.exec_id, attach)
    finally:
        attach.finish(0)
    with contextlib.suppress(ShimError):
        client.delete_task(args.id, exec_id=args.exec_id)
    return status


def cmd_tasks_pause(client: Client, args: argparse.Namespace) -> int:
    client.pause(args.id)
    return 0


def cmd_tasks_resume(client: Client, args: argparse.Namespace) -> int:
    client.resume(args.id)
    return 0


def cmd_tasks_stats(client: Client, args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    metrics = MessageToDict(client.stats(args.id), preserving_proto_field_name=True,
                            always_print_fields_with_no_presence=True)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_tasks_ps(client: Client, args: argparse.Namespace) -> int:
    rows = [("PID", "EXEC")]
    rows += [(str(p.pid), p.exec_id or "-") for p in client.pids(args.id)]
    _table(rows, False)
    return 0


def cmd_events(client: Client, args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    stream = client.subscribe(*args.filters, replay=args.replay)
    signal.signal(signal.SIGINT, lambda *_: stream.cancel())
    for ev in stream:
        which = ev.WhichOneof("event")
        body = MessageToDict(getattr(ev, which), preserving_proto_field_name=True) if which else {}
        stamp = ev.timestamp.ToDatetime().isoformat() + "Z"
        print(f"{stamp} {ev.namespace} {ev.topic} {json.dumps(body, sort_keys=True)}",
              flush=True)
    return 0


def cmd_version(client: Client, args: argparse.Namespace) -> int:
    v = client.version()
    print(f"shimd {v.version} ({v.revision or 'no revision'}), API {v.api}")
    return 0


def _table(rows: Sequence[Sequence[str]], quiet: bool) -> None:
    if quiet:
        for row in rows[1:]:
            print(row[0])
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# ---- the parser -------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shimctl", description="command line of shimd")
    p.add_argument("--address", "-a", default=os.environ.get("SHIM_ADDRESS", DEFAULT_ADDRESS))
    p.add_argument("--namespace", "-n",
                   default=os.environ.get("SHIM_NAMESPACE", namespaces.DEFAULT))
    p.add_argument("--timeout", type=float, default=None, help="seconds per call")
    sub = p.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="create and start a container")
    run.add_argument("--rm", action="store_true", help="delete it once it exits")
    run.add_argument("-d", "--detach", action="store_true")
    run.add_argument("-t", "--tty", action="store_true")
    run.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    run.add_argument("--runtime", default="", help="OCI runtime binary (default: shimd's)")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--rootfs", help="root filesystem directory")
    source.add_argument("--image", help="image whose snapshot is the root filesystem, "
                        "and whose config gives the default command, env, cwd and user")
    run.add_argument("--env", "-e", action="append", default=[], help="K=V")
    run.add_argument("--cwd", default="")
    run.add_argument("--log", default="", help="json-file log path")
    run.add_argument("--log-max-size", type=int, default=0)
    run.add_argument("--log-max-files", type=int, default=1)
    run.add_argument("id")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(func=cmd_run)

    containers = sub.add_parser("containers", aliases=["c"], help="container metadata")
    csub = containers.add_subparsers(dest="containers_cmd", required=True)
    ls = csub.add_parser("ls", aliases=["list"])
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("filters", nargs="*")
    ls.set_defaults(func=cmd_containers_ls)
    rm = csub.add_parser("rm", aliases=["delete"])
    rm.add_argument("ids", nargs="+")
    rm.set_defaults(func=cmd_containers_rm)

    tasks = sub.add_parser("tasks", aliases=["t"], help="running containers")
    tsub = tasks.add_subparsers(dest="tasks_cmd", required=True)
    ls = tsub.add_parser("ls", aliases=["list"])
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("filters", nargs="*")
    ls.set_defaults(func=cmd_tasks_ls)
    kill = tsub.add_parser("kill")
    kill.add_argument("-s", "--signal", type=_signal_number, default=signal.SIGTERM)
    kill.add_argument("--all", "-a", action="store_true")
    kill.add_argument("--exec-id", default="")
    kill.add_argument("id")
    kill.set_defaults(func=cmd_tasks_kill)
    trm = tsub.add_parser("rm", aliases=["delete"])
    trm.add_argument("-f", "--force", action="store_true")
    trm.add_argument("--exec-id", default="")
    trm.add_argument("id")
    trm.set_defaults(func=cmd_tasks_rm)
    ex = tsub.add_parser("exec")
    ex.add_argument("--exec-id", required=True)
    ex.add_argument("-t", "--tty", action="store_true")
    ex.add_argument("-i", "--interactive", action="store_true")
    ex.add_argument("-d", "--detach", action="store_true")
    ex.add_argument("--env", "-e", action="append", default=[])
    ex.add_argument("id")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(func=cmd_tasks_exec)
    for name, func in (("pause", cmd_tasks_pause), ("resume", cmd_tasks_resume),
                       ("stats", cmd_tasks_stats), ("ps", cmd_tasks_ps)):
        sp = tsub.add_parser(name)
        sp.add_argument("id")
        sp.set_defaults(func=func)

    events = sub.add_parser("events", help="follow events")
    events.add_argument("--replay", action="store_true",
                        help="first the matching events of shimd's backlog")
    events.add_argument("filters", nargs="*", help="e.g. topic==/tasks/exit")
    events.set_defaults(func=cmd_events)
    version = sub.add_parser("version")
    version.set_defaults(func=cmd_version)

    try:
        images = importlib.import_module("shim.ctl.images")
    except ModuleNotFoundError as exc:
        if exc.name != "shim.ctl.images":
            raise
    else:
        images.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = Client(args.address, args.namespace, timeout=args.timeout)
    except ShimError as exc:
        print(f"shimctl: {exc}", file=sys.stderr)
        return 1
    try:
        result: int = args.func(client, args)
        return result
    except ShimError as exc:
        print(f"shimctl: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
