"""Pull and push against a real registry (Debian's docker-registry on 127.0.0.1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shim.content import ContentStore
from shim.errors import NotFound
from shim.images.build import build_busybox, make_image, store_layer
from shim.images.distribution import (
    AuthenticationError,
    DigestMismatch,
    RegistryClient,
    load_docker_credentials,
)
from shim.images.progress import Status
from shim.images.resolve import resolve_manifest
from shim.images.store import Image, ImageStore
from shim.snapshots import OverlaySnapshotter
from tests.compat.registry_support import REGISTRY, bcrypt_htpasswd, run_registry
from tests.integration.images_support import run_in_image

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(REGISTRY is None, reason="docker-registry not installed")]
NS = "default"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry(tmp_path):
    with run_registry(tmp_path / "registry") as reg:
        yield reg


def stores(root):
    return ContentStore(root), ImageStore(root)


@pytest.fixture
def local(tmp_path):
    root = tmp_path / "local"
    content, images = stores(root)
    build_busybox(content, images, NS)
    return root


def client(reg, **kw):
    return RegistryClient(plain_http={reg.host}, **kw)


def random_layer_image(content, images, name, sizes):
    """An image of busybox plus layers of random (incompressible) bytes."""
    import io
    import tarfile

    base = resolve_manifest(content, images.get(NS, "docker.io/library/busybox:latest").target)
    from shim.images.resolve import read_config
    layers = [(base.layers[0], read_config(content, base).diff_ids[0])]
    for i, size in enumerate(sizes):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(f"data/blob{i}.bin")
            info.size = size
            tar.addfile(info, io.BytesIO(os.urandom(size)))
        layers.append(store_layer(content, io.BytesIO(buf.getvalue())))
    target = make_image(content, layers, {"Cmd": ["sh"]})
    return images.put(NS, Image(name, target))


def test_push_remove_pull_run(registry, local, tmp_path):
    content, images = stores(local)
    ref = f"{registry.host}/berth/busybox:v1"
    events = []
    pushed = client(registry).push(content, images, NS, ref, local_name="busybox",
                                   progress=events.append)
    assert len(pushed.uploaded) == 2 and not pushed.existing
    assert registry.status(f"/v2/berth/busybox/manifests/{pushed.target.digest}", "HEAD") == 200
    assert {e.status for e in events} >= {Status.PUSHING, Status.PUSHED, Status.DONE}

    again = client(registry).push(content, images, NS, ref, local_name="busybox")
    assert sorted(again.existing) == sorted(pushed.uploaded), "blobs are checked before upload"

    fresh = tmp_path / "fresh"
    c2, i2 = stores(fresh)
    events.clear()
    result = client(registry).pull(c2, i2, NS, ref, progress=events.append)
    assert result.image.target.digest == pushed.target.digest
    assert result.image.name == ref
    assert {b.digest for b in c2.list()} == {b.digest for b in content.list()}
    assert Status.DOWNLOADED in {e.status for e in events}
    out = run_in_image(fresh, ref, ["echo", "pulled"], tmp_path)
    assert out.stdout == "pulled\n", out.stderr

    by_digest = f"{registry.host}/berth/busybox@{pushed.target.digest}"
    again = client(registry).pull(c2, i2, NS, by_digest)
    assert again.bytes_downloaded == 0 and again.blobs_skipped == 2


@pytest.mark.parametrize("chunked", [False, True])
def test_monolithic_and_chunked_upload(registry, local, tmp_path, chunked):
    content, images = stores(local)
    random_layer_image(content, images, "localhost/big:1", [3 << 20])
    ref = f"{registry.host}/big:1"
    c = client(registry, chunk_size=1 << 20)
    pushed = c.push(content, images, NS, ref, local_name="localhost/big:1", chunked=chunked)
    assert len(pushed.uploaded) == 3
    c2, i2 = stores(tmp_path / "fresh")
    assert client(registry).pull(c2, i2, NS, ref).bytes_downloaded > 3 << 20


def test_cross_repository_mount(registry, local, tmp_path):
    content, images = stores(local)
    client(registry).push(content, images, NS, f"{registry.host}/team/a:1", local_name="busybox")
    c2, i2 = stores(tmp_path / "fresh")
    client(registry).pull(c2, i2, NS, f"{registry.host}/team/a:1")
    result = client(registry).push(c2, i2, NS, f"{registry.host}/team/b:1",
                                   local_name=f"{registry.host}/team/a:1")
    assert len(result.mounted) == 2 and not result.uploaded
    assert registry.status("/v2/team/b/manifests/1", "HEAD") == 200


def test_digest_mismatch_commits_nothing(registry, local, tmp_path):
    content, images = stores(local)
    image = random_layer_image(content, images, "localhost/bad:1", [1 << 20])
    ref = f"{registry.host}/bad:1"
    client(registry).push(content, images, NS, ref, local_name="localhost/bad:1")
    layer = resolve_manifest(content, image.target).layers[-1]
    data = registry.blob_data(layer.digest)
    corrupted = bytearray(data.read_bytes())
    corrupted[5000] ^= 0xFF
    data.write_bytes(bytes(corrupted))

    c2, i2 = stores(tmp_path / "fresh")
    with pytest.raises(DigestMismatch, match=layer.digest):
        client(registry).pull(c2, i2, NS, ref)
    assert not c2.exists(layer.digest)
    assert not c2.exists(image.target.digest), "no manifest without its layers"
    assert i2.list(NS) == []
    assert c2.list_statuses() == [], "the bad bytes are not kept for a resume"


PULL_AND_DIE = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from shim.content import ContentStore
    from shim.images.store import ImageStore
    from shim.images.distribution import RegistryClient
    from shim.images.progress import Status

    def die_half_way(event):
        if event.status == Status.DOWNLOADING and event.total > 8 << 20 \\
                and event.current > event.total // 2:
            os.kill(os.getpid(), signal.SIGKILL)

    c = RegistryClient(plain_http={{{host!r}}}, max_workers=1)
    c.pull(ContentStore({local!r}), ImageStore({local!r}), "default", {ref!r},
           progress=die_half_way)
""")


def test_interrupted_pull_resumes(registry, local, tmp_path):
    content, images = stores(local)
    random_layer_image(content, images, "localhost/resume:1", [16 << 20, 2 << 20])
    ref = f"{registry.host}/resume:1"
    client(registry).push(content, images, NS, ref, local_name="localhost/resume:1")
    fresh = tmp_path / "fresh"
    script = PULL_AND_DIE.format(root=str(ROOT), host=registry.host, local=str(fresh), ref=ref)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    c2, i2 = stores(fresh)
    partial = c2.list_statuses()
    assert len(partial) == 1 and 8 << 20 < partial[0].offset < partial[0].total
    assert i2.list(NS) == []

    result = client(registry).pull(c2, i2, NS, ref)
    assert result.bytes_resumed == partial[0].offset
    assert result.bytes_downloaded < 12 << 20, "the half already there is not fetched again"
    assert c2.list_statuses() == []
    out = run_in_image(fresh, ref, ["sh", "-c", "wc -c < /data/blob0.bin"], tmp_path)
    assert out.stdout.strip() == str(16 << 20), out.stderr


def test_missing_image_is_not_found(registry, tmp_path):
    c2, i2 = stores(tmp_path / "fresh")
    with pytest.raises(NotFound, match="manifest"):
        client(registry).pull(c2, i2, NS, f"{registry.host}/nothing:here")


def test_basic_auth(tmp_path, local):
    content, images = stores(local)
    with run_registry(tmp_path / "reg", htpasswd=bcrypt_htpasswd("berth", "s3cret")) as reg:
        ref = f"{reg.host}/private/busybox:1"
        with pytest.raises(AuthenticationError, match="credentials"):
            client(reg).push(content, images, NS, ref, local_name="busybox")
        with pytest.raises(AuthenticationError, match="refused"):
            client(reg, credentials={reg.host: ("berth", "wrong")}).push(
                content, images, NS, ref, local_name="busybox")
        docker_config = tmp_path / "config.json"
        import base64
        import json
        docker_config.write_text(json.dumps({"auths": {reg.host: {
            "auth": base64.b64encode(b"berth:s3cret").decode()}}}))
        creds = load_docker_credentials(docker_config)
        client(reg, credentials=creds).push(content, images, NS, ref, local_name="busybox")
        c2, i2 = stores(tmp_path / "fresh")
        client(reg, credentials=creds).pull(c2, i2, NS, ref)
        assert i2.get(NS, ref).target.digest == images.get(
            NS, "docker.io/library/busybox:latest").target.digest


def test_snapshot_store_untouched_by_pull(registry, local, tmp_path):
    """Pull only fills the content store; unpacking is a separate, explicit step."""
    content, images = stores(local)
    client(registry).push(content, images, NS, f"{registry.host}/x:1", local_name="busybox")
    fresh = tmp_path / "fresh"
    c2, i2 = stores(fresh)
    client(registry).pull(c2, i2, NS, f"{registry.host}/x:1")
    assert OverlaySnapshotter(fresh).list() == []


def test_index_resolves_to_linux_amd64(registry, local, tmp_path):
    """A multi-platform index pulls only the linux/amd64 manifest; export uses that."""
    import io
    import json as _json

    from shim.images.oci import OCI_INDEX, Descriptor, canonical, descriptor_for
    from shim.images.resolve import read_config

    content, images = stores(local)
    amd = resolve_manifest(content, images.get(NS, "docker.io/library/busybox:latest").target)
    arm_layer = store_layer(content, io.BytesIO(b"\0" * 1024))
    arm_cfg = read_config(content, amd).raw | {"architecture": "arm64",
                                               "rootfs": {"type": "layers",
                                                          "diff_ids": [arm_layer[1]]}}
    arm_target = make_image(content, [arm_layer], arm_cfg["config"])
    arm_manifest = _json.loads(content.read_bytes(arm_target.digest))
    cfg_bytes = canonical(arm_cfg)
    cfg_desc = descriptor_for(arm_manifest["config"]["mediaType"], cfg_bytes)
    content.write_blob(cfg_bytes, cfg_desc.digest)
    arm_manifest["config"] = cfg_desc.to_dict()
    arm_bytes = canonical(arm_manifest)
    arm_desc = descriptor_for(arm_manifest["mediaType"], arm_bytes)
    content.write_blob(arm_bytes, arm_desc.digest)
    images.put(NS, Image("localhost/multi:arm64", arm_desc))

    c = client(registry)
    c.push(content, images, NS, f"{registry.host}/multi:amd64", local_name="busybox")
    c.push(content, images, NS, f"{registry.host}/multi:arm64", local_name="localhost/multi:arm64")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        Descriptor(arm_desc.media_type, arm_desc.digest, arm_desc.size,
                   platform={"os": "linux", "architecture": "arm64"}).to_dict(),
        Descriptor(amd.descriptor.media_type, amd.descriptor.digest, amd.descriptor.size,
                   platform={"os": "linux", "architecture": "amd64"}).to_dict(),
    ]}
    index_bytes = canonical(index)
    index_desc = descriptor_for(OCI_INDEX, index_bytes)
    from shim.images.reference import parse_reference
    c.put_manifest(parse_reference(f"{registry.host}/multi:latest"), "latest", index_desc,
                   index_bytes)

    fresh = tmp_path / "fresh"
    c2, i2 = stores(fresh)
    result = c.pull(c2, i2, NS, f"{registry.host}/multi:latest")
    assert result.image.target.digest == index_desc.digest
    assert result.manifest.descriptor.digest == amd.descriptor.digest
    assert not c2.exists(arm_layer[0].digest) and not c2.exists(arm_desc.digest)
    out = run_in_image(fresh, f"{registry.host}/multi:latest", ["uname", "-m"], tmp_path)
    assert out.stdout == "x86_64\n", out.stderr
    pushed = c.push(c2, i2, NS, f"{registry.host}/copy:1",
                    local_name=f"{registry.host}/multi:latest")
    assert pushed.target.digest == amd.descriptor.digest, "the partial index is not pushed"


def test_insecure_registry_with_self_signed_tls(tmp_path, local):
    content, images = stores(local)
    with run_registry(tmp_path / "tls", tls=True) as reg:
        ref = f"{reg.host}/tls/busybox:1"
        from shim.images.distribution import RegistryError
        with pytest.raises(RegistryError, match=r"TLS failed.*insecure"):
            RegistryClient().push(content, images, NS, ref, local_name="busybox")
        RegistryClient(insecure={reg.host}).push(content, images, NS, ref, local_name="busybox")
        c2, i2 = stores(tmp_path / "fresh")
        result = RegistryClient(insecure={reg.host}).pull(c2, i2, NS, ref)
        assert result.bytes_downloaded > 0


def test_concurrent_pulls_share_blobs(registry, local, tmp_path):
    """Two pulls of images sharing layers, at once, into one store: both complete."""
    import threading

    content, images = stores(local)
    random_layer_image(content, images, "localhost/share:1", [6 << 20])
    ref = f"{registry.host}/share:1"
    client(registry).push(content, images, NS, ref, local_name="localhost/share:1")
    c2, i2 = stores(tmp_path / "fresh")
    results, errors = [], []

    def pull():
        try:
            results.append(client(registry).pull(c2, i2, NS, ref))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(results) == 3
    assert sum(r.bytes_downloaded for r in results) < 2 * (6 << 20)
    assert c2.list_statuses() == []
