"""Images made and moved without a registry, run with runc on an overlay rootfs:
the busybox builder, rootfs import, docker-save and OCI layout round trips, whiteouts
seen from inside a container, and garbage collection."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest

from shim.content import ContentStore
from shim.errors import NotFound
from shim.images.build import build_busybox, import_rootfs, make_image, store_layer
from shim.images.docker_archive import load, save
from shim.images.gc import prune
from shim.images.oci_layout import load_oci, save_oci
from shim.images.resolve import read_config, resolve_manifest
from shim.images.runconfig import prepare_container_rootfs, release_container_rootfs
from shim.images.store import Image, ImageStore
from shim.snapshots import OverlaySnapshotter
from tests.integration.images_support import run_in_image, tar_of

pytestmark = pytest.mark.root
NS = "default"
BUSYBOX = "docker.io/library/busybox:latest"


def stores(root):
    return ContentStore(root), ImageStore(root), OverlaySnapshotter(root)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "shimroot"
    content, images, _ = stores(r)
    build_busybox(content, images, NS)
    return r


def test_busybox_builder_is_reproducible_and_runs(root, tmp_path):
    content, images, _ = stores(root)
    first = images.get(NS, BUSYBOX).target
    again = build_busybox(*stores(tmp_path / "other")[:2], NS)
    assert again.target.digest == first.digest
    script = "echo hello from $(busybox | head -1 | cut -c1-7)"
    out = run_in_image(root, "busybox", ["sh", "-c", script], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hello from BusyBox\n"
    default = run_in_image(root, "busybox", None, tmp_path)
    assert default.returncode == 0, default.stderr
    config = read_config(content, resolve_manifest(content, first))
    assert config.cmd == ["sh"] and config.env[0].startswith("PATH=")


def test_rootfs_import(root, tmp_path):
    content, images, _ = stores(root)
    rootfs = tmp_path / "rootfs.tar.gz"
    base = gzip.decompress(
        content.read_bytes(resolve_manifest(content, images.get(NS, BUSYBOX).target)
                           .layers[0].digest))
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(base)) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        info = tarfile.TarInfo("etc/marker")
        info.size = 9
        dst.addfile(info, io.BytesIO(b"imported\n"))
    rootfs.write_bytes(gzip.compress(buf.getvalue()))
    image = import_rootfs(content, images, NS, rootfs, "localhost/imported:v1")
    assert image.name == "localhost/imported:v1"
    out = run_in_image(root, "localhost/imported:v1", ["cat", "/etc/marker"], tmp_path)
    assert out.stdout == "imported\n", out.stderr


def test_whiteouts_in_a_container(root, tmp_path):
    """The upper layer deletes a file and replaces a directory: the container sees that."""
    content, images, _ = stores(root)
    bb = resolve_manifest(content, images.get(NS, BUSYBOX).target)
    bb_layer = (bb.layers[0], read_config(content, bb).diff_ids[0])
    lower = store_layer(content, io.BytesIO(tar_of([
        ("dir", "data", b""), ("file", "data/gone", "x"), ("dir", "data/dir", b""),
        ("file", "data/dir/old", "old"), ("file", "data/keep", "keep"),
    ])))
    upper = store_layer(content, io.BytesIO(tar_of([
        ("dir", "data", b""), ("file", "data/.wh.gone", b""),
        ("dir", "data/dir", b""), ("file", "data/dir/.wh..wh..opq", b""),
        ("file", "data/dir/new", "new"),
    ])))
    target = make_image(content, [bb_layer, lower, upper], {"Cmd": ["sh"]})
    images.put(NS, Image("localhost/whiteouts:latest", target))
    out = run_in_image(root, "localhost/whiteouts", ["sh", "-c", "cd /data && ls -R"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [".:", "dir", "keep", "./dir:", "new"]


def test_docker_save_load_round_trip(root, tmp_path):
    content, images, _ = stores(root)
    archive = tmp_path / "saved.tar"
    save(content, images, NS, ["busybox"], archive)
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["busybox:latest"]
        layer = tar.extractfile(manifest[0]["Layers"][0]).read(512)
        assert layer[257:262] == b"ustar", "docker-save layers are plain tars"
    other = tmp_path / "other"
    c2, i2, _ = stores(other)
    loaded = load(c2, i2, NS, archive)
    assert [i.name for i in loaded] == [BUSYBOX]
    m1 = resolve_manifest(content, images.get(NS, BUSYBOX).target)
    m2 = resolve_manifest(c2, loaded[0].target)
    assert m1.config.digest == m2.config.digest, "same image ID"
    out = run_in_image(other, "busybox", ["echo", "loaded"], tmp_path)
    assert out.stdout == "loaded\n", out.stderr


@pytest.mark.parametrize("form", ["dir", "tar"])
def test_oci_layout_round_trip(root, tmp_path, form):
    content, images, _ = stores(root)
    dest = tmp_path / ("layout/" if form == "dir" else "layout.tar")
    if form == "dir":
        dest.mkdir()
    save_oci(content, images, NS, ["busybox"], dest)
    c2, i2, _ = stores(tmp_path / "other")
    loaded = load_oci(c2, i2, NS, dest)
    assert [(i.name, i.target.digest) for i in loaded] == [
        (BUSYBOX, images.get(NS, BUSYBOX).target.digest)]
    assert {b.digest for b in c2.list()} == {b.digest for b in content.list()}


def test_load_refuses_garbage(tmp_path):
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        info = tarfile.TarInfo("hello")
        tar.addfile(info)
    with pytest.raises(Exception, match="neither a docker-save archive"):
        load(*stores(tmp_path / "r")[:2], NS, bad)


def test_prune_keeps_what_is_used(root, tmp_path):
    content, images, snapshotter = stores(root)
    prepared = prepare_container_rootfs(root, "busybox", "ctr1")
    images.delete(NS, BUSYBOX)
    result = prune(content, images, snapshotter, grace=0)
    assert result.snapshots == [], "the container's layer chain is in use"
    assert len(result.blobs) == 3, "manifest, config and layer are unreferenced"
    assert snapshotter.exists(prepared.snapshot_key)
    release_container_rootfs(root, "ctr1")
    result = prune(content, images, snapshotter, grace=0)
    assert len(result.snapshots) == 1 and result.bytes_freed > 500_000
    assert snapshotter.list() == [] and content.list() == []
    with pytest.raises(NotFound):
        prepare_container_rootfs(root, "busybox", "ctr2")


def test_zstd_layer_runs(root, tmp_path):
    import zstandard

    content, images, _ = stores(root)
    bb = resolve_manifest(content, images.get(NS, BUSYBOX).target)
    bb_layer = (bb.layers[0], read_config(content, bb).diff_ids[0])
    raw = tar_of([("dir", "etc", b""), ("file", "etc/zstd-marker", "zstd works\n")])
    layer = store_layer(content, io.BytesIO(zstandard.ZstdCompressor().compress(raw)))
    assert layer[0].media_type.endswith("+zstd")
    images.put(NS, Image("localhost/zstd:1", make_image(content, [bb_layer, layer])))
    out = run_in_image(root, "localhost/zstd:1", ["cat", "/etc/zstd-marker"], tmp_path)
    assert out.stdout == "zstd works\n", out.stderr


def test_hostile_layer_in_an_image_leaves_nothing(root, tmp_path):
    from shim.archive import LayerError

    content, images, snapshotter = stores(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    bb = resolve_manifest(content, images.get(NS, BUSYBOX).target)
    bb_layer = (bb.layers[0], read_config(content, bb).diff_ids[0])
    evil = store_layer(content, io.BytesIO(tar_of([
        ("sym", "escape", str(outside)), ("file", "escape/pwned", "x")])))
    images.put(NS, Image("localhost/evil:1", make_image(content, [bb_layer, evil])))
    with pytest.raises(LayerError, match="'escape' is a symlink"):
        prepare_container_rootfs(root, "localhost/evil:1", "victim")
    assert list(outside.iterdir()) == []
    kinds = [(s.name, s.kind.value) for s in snapshotter.list()]
    assert kinds == [(bb_layer[1], "committed")], "the good base layer stays, nothing else"
