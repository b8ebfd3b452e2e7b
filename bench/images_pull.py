"""Pull and unpack of a multi-layer image from a local docker-registry: berth vs skopeo.

    sudo .venv/bin/python bench/images_pull.py --size-mb 200 --layers 4

Builds busybox + N layers of incompressible data (gzip), pushes it to a docker-registry
on 127.0.0.1, then times, each from an empty store: berth's pull (parallel layers), its
unpack into overlay snapshots, `skopeo copy` to an OCI layout, and `umoci unpack` and
`ctr pull` where installed. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shim.content import ContentStore
from shim.images.build import build_busybox, make_image, store_layer
from shim.images.distribution import RegistryClient
from shim.images.resolve import read_config, resolve_manifest
from shim.images.store import Image, ImageStore
from shim.images.unpack import unpack
from shim.snapshots import OverlaySnapshotter
from tests.compat.registry_support import run_registry

NS = "default"


def layer_bytes(size: int, seed: int) -> bytes:
    """A gzip'd tar of `size` bytes in 4 MiB files: random, so gzip cannot shrink it."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        left, i = size, 0
        while left > 0:
            n = min(4 << 20, left)
            info = tarfile.TarInfo(f"layer{seed}/file{i}.bin")
            info.size = n
            tar.addfile(info, io.BytesIO(os.urandom(n)))
            left -= n
            i += 1
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--workers", type=int, default=3)
    args = ap.parse_args()
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "src"
        content, images = ContentStore(src), ImageStore(src)
        base = build_busybox(content, images, NS)
        bm = resolve_manifest(content, base.target)
        layers = [(bm.layers[0], read_config(content, bm).diff_ids[0])]
        per = args.size_mb * (1 << 20) // args.layers
        for i in range(args.layers):
            layers.append(store_layer(content, io.BytesIO(layer_bytes(per, i))))
        images.put(NS, Image("localhost/bench:1", make_image(content, layers)))
        total = sum(d.size for d, _ in layers)
        with run_registry(tmp / "registry") as reg:
            ref = f"{reg.host}/bench:1"
            client = RegistryClient(plain_http={reg.host}, max_workers=args.workers)
            t, _ = timed(lambda: client.push(content, images, NS, ref,
                                             local_name="localhost/bench:1"))
            rows.append(("berth push (monolithic)", t))

            dst = tmp / "dst"
            c2, i2, sn = ContentStore(dst), ImageStore(dst), OverlaySnapshotter(dst)
            t, result = timed(lambda: client.pull(c2, i2, NS, ref))
            rows.append((f"berth pull ({args.workers} parallel layers)", t))
            cfg = read_config(c2, result.manifest)
            t, _ = timed(lambda: unpack(c2, sn, result.manifest, cfg))
            rows.append(("berth unpack into overlay snapshots", t))

            skopeo = shutil.which("skopeo")
            if skopeo:
                layout = tmp / "oci"
                t, _ = timed(lambda: subprocess.run(
                    [skopeo, "--insecure-policy", "copy", "--src-tls-verify=false",
                     f"docker://{ref}", f"oci:{layout}:1"], check=True, capture_output=True))
                rows.append(("skopeo copy docker:// → oci:", t))
                umoci = shutil.which("umoci")
                if umoci:
                    t, _ = timed(lambda: subprocess.run(
                        [umoci, "unpack", "--image", f"{layout}:1", str(tmp / "bundle")],
                        check=True, capture_output=True))
                    rows.append(("umoci unpack", t))
                else:
                    rows.append(("umoci unpack (not installed)", float("nan")))
            if shutil.which("ctr") and shutil.which("containerd"):
                from tests.compat.containerd_support import containerd_daemon

                with containerd_daemon(tmp / "containerd") as daemon:
                    t, _ = timed(lambda: daemon.run("images", "pull", "--plain-http", ref,
                                                    timeout=600, check=True))
                rows.append(("ctr pull, containerd 1.6 (fetch + unpack)", t))
            else:
                rows.append(("ctr pull (not installed)", float("nan")))
    by = dict(rows)
    rows.append(("berth pull + unpack", by[f"berth pull ({args.workers} parallel layers)"]
                 + by["berth unpack into overlay snapshots"]))
    if "umoci unpack" in by:
        rows.append(("skopeo copy + umoci unpack",
                     by["skopeo copy docker:// → oci:"] + by["umoci unpack"]))
    print(f"image: busybox + {args.layers} layers, {total / 1e6:.0f} MB compressed\n")
    print("| step | seconds | MB/s |\n|---|---|---|")
    for name, secs in rows:
        rate = "" if secs != secs else f"{total / 1e6 / secs:.0f}"
        print(f"| {name} | {secs:.2f} | {rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
