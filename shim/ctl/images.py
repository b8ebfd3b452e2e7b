"""`shimctl images`: pull, push, ls, rm, tag, import, load, save, busybox, prune.

A thin layer over shim.images: distribution and import/export run here, in the client,
writing through shimd's content and image services (as containerd's ctr does); unpacking
and pruning run in shimd. `--root DIR` works on a state root directly, without shimd.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shim import namespaces
from shim.content.api import ContentAPI
from shim.errors import ShimError
from shim.images import build, docker_archive, oci_layout
from shim.images.distribution import RegistryClient, load_docker_credentials
from shim.images.progress import ProgressEvent, Status
from shim.images.reference import parse_reference
from shim.images.resolve import resolve_manifest
from shim.images.store import Image

DEFAULT_ADDRESS = "/run/berth-shim/shim.sock"


@dataclass
class Stores:
    content: Any
    images: Any
    unpack: Callable[[str], str]
    prune: Callable[[float, bool], Any]
    namespace: str


@contextmanager
def _stores(client: Any, args: argparse.Namespace) -> Iterator[Stores]:
    """Local stores for --root, else the services of shimd on shimctl's client channel."""
    ns = namespaces.validate(getattr(args, "namespace", None) or namespaces.DEFAULT)
    root = getattr(args, "images_root", None)
    if root:
        from shim.content import ContentStore
        from shim.images.gc import DEFAULT_GRACE, prune
        from shim.images.resolve import read_config
        from shim.images.store import ImageStore
        from shim.images.unpack import unpack
        from shim.snapshots import OverlaySnapshotter

        content, images, sn = ContentStore(Path(root)), ImageStore(Path(root)), \
            OverlaySnapshotter(Path(root))

        def local_unpack(name: str) -> str:
            manifest = resolve_manifest(content, images.get(ns, name).target)
            return unpack(content, sn, manifest, read_config(content, manifest))

        yield Stores(content, images, local_unpack,
                     lambda grace, dry: prune(content, images, sn,
                                              grace if grace >= 0 else DEFAULT_GRACE, dry), ns)
        return
    import grpc

    from shim.images.remote import RemoteContent, RemoteImages

    own = getattr(client, "channel", None) is None
    address = getattr(args, "address", None) or DEFAULT_ADDRESS
    channel = grpc.insecure_channel(f"unix:{address}") if own else client.channel
    try:
        remote_images = RemoteImages(channel)
        yield Stores(RemoteContent(channel, ns), remote_images,
                     lambda name: remote_images.unpack(ns, name),
                     lambda grace, dry: remote_images.prune(grace, dry), ns)
    finally:
        if own:
            channel.close()


class ProgressBars:
    """One rich progress bar per blob, fed by the library's progress events (any thread)."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.quiet = quiet
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(),
                                 console=Console(stderr=True), disable=quiet)
        self.tasks: dict[str, Any] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> ProgressBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if not event.digest or event.kind == "image":
            return
        with self.lock:
            label = f"{event.kind} {event.digest.split(':')[-1][:12]} {event.status.value}"
            task = self.tasks.get(event.digest)
            if task is None:
                task = self.progress.add_task(label, total=event.total or None)
                self.tasks[event.digest] = task
            done = event.status in (Status.EXISTS, Status.DOWNLOADED, Status.PUSHED,
                                    Status.MOUNTED, Status.EXTRACTED)
            self.progress.update(task, description=label,
                                 completed=event.total if done else event.current)


def _registry(args: argparse.Namespace) -> RegistryClient:
    host = parse_reference(args.ref).domain
    creds = load_docker_credentials()
    if args.user:
        user, _, password = args.user.partition(":")
        creds[host] = (user, password)
    return RegistryClient(plain_http={host} if args.plain_http else (),
                          insecure={host} if args.insecure else (), credentials=creds)


def cmd_pull(client: Any, args: argparse.Namespace) -> int:
    with _stores(client, args) as s, ProgressBars(args.quiet) as bars:
        result = _registry(args).pull(s.content, s.images, s.namespace, args.ref,
                                      progress=bars)
        if not args.no_unpack:
            s.unpack(result.image.name)
    print(f"{result.image.name} {result.image.target.digest}")
    return 0


def cmd_push(client: Any, args: argparse.Namespace) -> int:
    with _stores(client, args) as s, ProgressBars(args.quiet) as bars:
        result = _registry(args).push(s.content, s.images, s.namespace, args.ref,
                                      local_name=args.local or "", progress=bars,
                                      chunked=True if args.chunked else None)
    print(f"{parse_reference(args.ref)} {result.target.digest}")
    return 0


def _size(content: ContentAPI, image: Image) -> int:
    try:
        manifest = resolve_manifest(content, image.target)
    except ShimError:
        return 0
    return manifest.config.size + sum(layer.size for layer in manifest.layers)


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n} B"


def cmd_ls(client: Any, args: argparse.Namespace) -> int:
    with _stores(client, args) as s:
        images = s.images.list(s.namespace)
        if args.quiet:
            for image in images:
                print(image.name)
            return 0
        rows = [(i.name, i.target.digest.split(":")[-1][:12], _human(_size(s.content, i)))
                for i in images]
    width = max([len(r[0]) for r in rows] + [4])
    print(f"{'NAME':<{width}}  {'DIGEST':<12}  SIZE")
    for name, digest, size in rows:
        print(f"{name:<{width}}  {digest:<12}  {size}")
    return 0


def cmd_rm(client: Any, args: argparse.Namespace) -> int:
    with _stores(client, args) as s:
        for ref in args.refs:
            name = str(parse_reference(ref))
            s.images.delete(s.namespace, name)
            print(name)
    return 0


def cmd_tag(client: Any, args: argparse.Namespace) -> int:
    with _stores(client, args) as s:
        src = s.images.get(s.namespace, str(parse_reference(args.src)))
        dst = s.images.put(s.namespace, Image(str(parse_reference(args.dst)), src.target,
                                              dict(src.labels)))
    print(dst.name)
    return 0


def cmd_import(client: Any, args: argparse.Namespace) -> int:
    config = {"Cmd": args.cmd} if args.cmd else None
    with _stores(client, args) as s:
        image = build.import_rootfs(s.content, s.images, s.namespace, Path(args.tarfile),
                                    args.ref, config)
    print(f"{image.name} {image.target.digest}")
    return 0


def cmd_load(client: Any, args: argparse.Namespace) -> int:
    with _stores(client, args) as s:
        loaded = docker_archive.load(s.content, s.images, s.namespace, Path(args.input),
                                     args.base_name or "")
    for image in loaded:
        print(f"Loaded image: {image.name}")
    return 0


def cmd_save(client: Any, args: argparse.Namespace) -> int:
    with _stores(client, args) as s:
        if args.format == "oci":
            oci_layout.save_oci(s.content, s.images, s.namespace, args.refs, Path(args.output))
        else:
            docker_archive.save(s.content, s.images, s.namespace, args.refs, Path(args.output))
    return 0


def cmd_busybox(client: Any, args: argparse.Namespace) -> int:
    with _stores(client, args) as s:
        image = build.build_busybox(s.content, s.images, s.namespace, args.ref,
                                    Path(args.busybox))
    print(f"{image.name} {image.target.digest}")
    return 0


def cmd_prune(client: Any, args: argparse.Namespace) -> int:
    with _stores(client, args) as s:
        result = s.prune(args.grace, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(result.blobs)} blobs, {len(result.snapshots)} snapshots, "
          f"{_human(result.bytes_freed)}")
    return 0


def register(subparsers: Any) -> None:
    """Add `images` to shimctl's subcommands; each sets args.func(client, args), where
    client is shimctl's shim.client.Client (its channel is used) or None."""
    p = subparsers.add_parser("images", help="pull, push, list, import and export images")
    p.add_argument("--root", dest="images_root", default=None,
                   help="work on this state root directly instead of asking shimd")
    sub = p.add_subparsers(dest="images_command", required=True)

    def registry_flags(q: argparse.ArgumentParser) -> None:
        q.add_argument("ref")
        q.add_argument("--plain-http", action="store_true", help="talk HTTP to the registry")
        q.add_argument("--insecure", action="store_true",
                       help="HTTPS without certificate checks (falls back to HTTP)")
        q.add_argument("-u", "--user", default="", help="USER:PASSWORD for the registry")
        q.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    q = sub.add_parser("pull", help="pull an image from a registry and unpack it")
    registry_flags(q)
    q.add_argument("--no-unpack", action="store_true")
    q.set_defaults(func=cmd_pull)

    q = sub.add_parser("push", help="push an image to a registry")
    registry_flags(q)
    q.add_argument("--local", default="", help="the local image to push (default: REF)")
    q.add_argument("--chunked", action="store_true", help="upload blobs in chunks")
    q.set_defaults(func=cmd_push)

    q = sub.add_parser("ls", help="list images")
    q.add_argument("-q", "--quiet", action="store_true", help="names only")
    q.set_defaults(func=cmd_ls)

    q = sub.add_parser("rm", help="remove images (their blobs go at the next prune)")
    q.add_argument("refs", nargs="+")
    q.set_defaults(func=cmd_rm)

    q = sub.add_parser("tag", help="name an image anew")
    q.add_argument("src")
    q.add_argument("dst")
    q.set_defaults(func=cmd_tag)

    q = sub.add_parser("import", help="a rootfs tar (plain, gzip, zstd) as a one-layer image")
    q.add_argument("tarfile")
    q.add_argument("ref")
    q.add_argument("--cmd", nargs="+", default=None, help="the image's default command")
    q.set_defaults(func=cmd_import)

    q = sub.add_parser("load", help="load a docker-save tar or an OCI layout/archive")
    q.add_argument("input")
    q.add_argument("--base-name", default="",
                   help="repository for OCI entries named only by a tag")
    q.set_defaults(func=cmd_load)

    q = sub.add_parser("save", help="write images as a docker-save tar or an OCI archive")
    q.add_argument("refs", nargs="+")
    q.add_argument("-o", "--output", required=True)
    q.add_argument("--format", choices=("docker", "oci"), default="docker")
    q.set_defaults(func=cmd_save)

    q = sub.add_parser("busybox", help="build a busybox base image from the host's busybox")
    q.add_argument("ref", nargs="?", default="docker.io/library/busybox:latest")
    q.add_argument("--busybox", default="/bin/busybox")
    q.set_defaults(func=cmd_busybox)

    q = sub.add_parser("prune", help="remove blobs and snapshots nothing uses")
    q.add_argument("--grace", type=float, default=-1.0,
                   help="keep blobs younger than this many seconds (default 300)")
    q.add_argument("--dry-run", action="store_true")
    q.set_defaults(func=cmd_prune)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m shim.ctl.images`), for use before shimctl has it."""
    parser = argparse.ArgumentParser(prog="shimctl")
    parser.add_argument("--address", default=DEFAULT_ADDRESS)
    parser.add_argument("-n", "--namespace", default=namespaces.DEFAULT)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(None, args))
    except ShimError as exc:
        print(f"shimctl: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
