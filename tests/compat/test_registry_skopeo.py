"""Interoperability with skopeo: registry ↔ OCI layout ↔ docker archive ↔ berth, both ways."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from shim.content import ContentStore
from shim.images.build import build_busybox
from shim.images.distribution import RegistryClient
from shim.images.docker_archive import load, save
from shim.images.oci_layout import load_oci, save_oci
from shim.images.resolve import read_config, resolve_manifest
from shim.images.store import ImageStore
from tests.compat.registry_support import REGISTRY, run_registry
from tests.integration.images_support import run_in_image

SKOPEO = shutil.which("skopeo")
pytestmark = [pytest.mark.root,
              pytest.mark.skipif(REGISTRY is None or SKOPEO is None,
                                 reason="docker-registry and skopeo are needed")]
NS = "default"
BUSYBOX = "docker.io/library/busybox:latest"


def skopeo(*args):
    proc = subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def stores(root):
    return ContentStore(root), ImageStore(root)


@pytest.fixture
def registry(tmp_path):
    with run_registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def local(tmp_path):
    root = tmp_path / "local"
    build_busybox(*stores(root), NS)
    return root


def image_id(root, name):
    content, images = stores(root)
    return read_config(content, resolve_manifest(content, images.get(NS, name).target)).digest


def test_berth_push_skopeo_copy_to_oci_berth_loads(registry, local, tmp_path):
    content, images = stores(local)
    RegistryClient(plain_http={registry.host}).push(
        content, images, NS, f"{registry.host}/bb:1", local_name="busybox")
    layout = tmp_path / "oci"
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/bb:1", f"oci:{layout}:v1")
    inspect = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/bb:1"))
    assert inspect["Digest"] == images.get(NS, BUSYBOX).target.digest
    c2, i2 = stores(tmp_path / "fresh")
    loaded = load_oci(c2, i2, NS, layout, base_name="localhost/from-skopeo")
    assert [i.name for i in loaded] == ["localhost/from-skopeo:v1"]
    assert image_id(tmp_path / "fresh", "localhost/from-skopeo:v1") == image_id(local, BUSYBOX)
    out = run_in_image(tmp_path / "fresh", "localhost/from-skopeo:v1", ["echo", "ok"], tmp_path)
    assert out.stdout == "ok\n", out.stderr


def test_berth_oci_layout_skopeo_copy_to_registry_berth_pulls(registry, local, tmp_path):
    content, images = stores(local)
    layout = tmp_path / "layout.tar"
    save_oci(content, images, NS, ["busybox"], layout)
    skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{layout}:latest",
           f"docker://{registry.host}/via-skopeo:2")
    c2, i2 = stores(tmp_path / "fresh")
    result = RegistryClient(plain_http={registry.host}).pull(
        c2, i2, NS, f"{registry.host}/via-skopeo:2")
    assert read_config(c2, result.manifest).digest == image_id(local, BUSYBOX)


def test_docker_archive_both_ways(local, tmp_path):
    content, images = stores(local)
    ours = tmp_path / "ours.tar"
    save(content, images, NS, ["busybox"], ours)
    layout = tmp_path / "oci-from-archive"
    skopeo("copy", f"docker-archive:{ours}", f"oci:{layout}:x")
    theirs = tmp_path / "theirs.tar"
    skopeo("copy", f"oci:{layout}:x", f"docker-archive:{theirs}:localhost/skopeo-made:3")
    c2, i2 = stores(tmp_path / "fresh")
    loaded = load(c2, i2, NS, theirs)
    assert [i.name for i in loaded] == ["localhost/skopeo-made:3"]
    assert image_id(tmp_path / "fresh", "localhost/skopeo-made:3") == image_id(local, BUSYBOX)
    out = run_in_image(tmp_path / "fresh", "localhost/skopeo-made:3", ["echo", "ok"], tmp_path)
    assert out.stdout == "ok\n", out.stderr
