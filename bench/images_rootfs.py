"""Container rootfs preparation as the number of image layers grows.

    sudo .venv/bin/python bench/images_rootfs.py --layers 1 5 10 20 40 --runs 20

For each layer count: an image of busybox + N small layers is unpacked once; then the
median time of `prepare_container_rootfs` for a new container (overlay snapshot on the
top chain ID) and of mounting + unmounting its overlay, and the disk each container
adds. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shim.content import ContentStore
from shim.images.build import build_busybox, make_image, store_layer
from shim.images.resolve import read_config, resolve_manifest
from shim.images.runconfig import (
    prepare_container_rootfs,
    release_container_rootfs,
)
from shim.images.store import Image, ImageStore
from shim.snapshots import OverlaySnapshotter
from shim.snapshots.mount import mounted

NS = "default"


def small_layer(i: int) -> bytes:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for j in range(10):
            data = f"layer {i} file {j}\n".encode() * 100
            info = tarfile.TarInfo(f"opt/l{i}/f{j}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 5, 10, 20, 40])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    print("| layers | first unpack (s) | prepare (ms, median) | mount+umount (ms, median) "
          "| disk per container (kB) |\n|---|---|---|---|---|")
    for n in args.layers:
        with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp_s:
            root = Path(tmp_s)
            content, images = ContentStore(root), ImageStore(root)
            base = build_busybox(content, images, NS)
            bm = resolve_manifest(content, base.target)
            layers = [(bm.layers[0], read_config(content, bm).diff_ids[0])]
            layers += [store_layer(content, io.BytesIO(small_layer(i))) for i in range(n)]
            images.put(NS, Image("localhost/layers:1", make_image(content, layers)))
            start = time.perf_counter()
            prepare_container_rootfs(root, "localhost/layers:1", "warm")
            first = time.perf_counter() - start
            release_container_rootfs(root, "warm")
            sn = OverlaySnapshotter(root)
            before = sn.total_usage().size
            prep, mnt = [], []
            for r in range(args.runs):
                t0 = time.perf_counter()
                p = prepare_container_rootfs(root, "localhost/layers:1", f"c{r}")
                t1 = time.perf_counter()
                with mounted(p.mounts, root / f"m{r}") as m:
                    assert (m / "bin" / "busybox").exists()
                t2 = time.perf_counter()
                prep.append((t1 - t0) * 1000)
                mnt.append((t2 - t1) * 1000)
            per = (sn.total_usage().size - before) / args.runs / 1024
            for r in range(args.runs):
                release_container_rootfs(root, f"c{r}")
            print(f"| {n + 1} | {first:.2f} | {statistics.median(prep):.1f} | "
                  f"{statistics.median(mnt):.1f} | {per:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
