"""Helpers of the image tests: run a process in a container made from an image with runc."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

from shim.images.runconfig import prepare_container_rootfs, release_container_rootfs
from shim.snapshots.mount import mounted
from tests.support.bundle import base_config


def run_in_image(root: Path, ref: str, args: list[str] | None, workdir: Path,
                 namespace: str = "default") -> subprocess.CompletedProcess[str]:
    """Prepare the image's rootfs as an overlay snapshot, run `args` in it with runc, clean up."""
    runc = shutil.which("runc")
    assert runc, "runc is needed"
    cid = "img-" + uuid.uuid4().hex[:10]
    bundle = workdir / cid
    bundle.mkdir(parents=True)
    prepared = prepare_container_rootfs(root, ref, cid, namespace)
    try:
        cfg = base_config()
        cfg["root"] = {"path": "rootfs", "readonly": False}
        cfg["process"]["args"] = prepared.config.args(args)
        cfg["process"]["env"] = prepared.config.env or cfg["process"]["env"]
        cfg["process"]["cwd"] = prepared.config.working_dir
        (bundle / "config.json").write_text(json.dumps(cfg))
        with mounted(prepared.mounts, bundle / "rootfs"):
            state = workdir / "runc-state"
            try:
                return subprocess.run(
                    [runc, "--root", str(state), "run", "--bundle", str(bundle), cid],
                    capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            finally:
                subprocess.run([runc, "--root", str(state), "delete", "--force", cid],
                               capture_output=True, check=False)
    finally:
        release_container_rootfs(root, cid, namespace)


def tar_of(entries: list[tuple[str, str, bytes | str]]) -> bytes:
    """A layer tar from (kind, name, data-or-link) with kind in dir/file/sym."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            data = None
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
            else:
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()
