"""`docker save` / `docker load` archives.

Save writes the classic layout every docker and skopeo reads: manifest.json
(Config, RepoTags, Layers), the config as HEX.json, each layer uncompressed as
DIFFID/layer.tar (+ VERSION, json), and a legacy `repositories` file. Load reads that
layout whatever compresses the archive or its layers; an archive that is also an OCI
layout (docker 25+) loads the same way through its manifest.json.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from shim.archive import detect_compression, iter_decompressed
from shim.content.api import ContentAPI
from shim.errors import InvalidArgument
from shim.images.build import store_layer
from shim.images.oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_LAYER_ZSTD,
    Descriptor,
    canonical,
    descriptor_for,
    load_json,
)
from shim.images.oci_layout import LAYOUT_FILE, LayoutSource, add_bytes, add_dir, add_stream
from shim.images.oci_layout import load_oci as _load_oci
from shim.images.reference import parse_reference
from shim.images.resolve import IterStream, read_config, resolve_manifest
from shim.images.store import Image, ImageStoreAPI

_DOCKER_MEDIA = {"none": DOCKER_LAYER, "gzip": DOCKER_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}


def load(content: ContentAPI, images: ImageStoreAPI, namespace: str, path: Path,
         base_name: str = "") -> list[Image]:
    """Load a docker-save archive or an OCI archive/directory; the images it named."""
    source = LayoutSource(path)
    try:
        if source.has("manifest.json"):
            return _load_docker(content, images, namespace, source)
        if source.has(LAYOUT_FILE):
            return _load_oci(content, images, namespace, path, base_name)
        raise InvalidArgument(f"{path}: neither a docker-save archive (manifest.json) nor an "
                              f"OCI layout ({LAYOUT_FILE})")
    finally:
        source.close()


def _load_docker(content: ContentAPI, images: ImageStoreAPI, namespace: str,
                 source: LayoutSource) -> list[Image]:
    raw = json.loads(source.read("manifest.json"))
    if not isinstance(raw, list):
        raise InvalidArgument(f"{source.path}: manifest.json is not a list")
    loaded = []
    for i, entry in enumerate(raw):
        where = f"{source.path}: manifest.json entry {i}"
        try:
            config_name, layer_names = str(entry["Config"]), list(entry["Layers"])
        except (KeyError, TypeError):
            raise InvalidArgument(f"{where}: needs Config and Layers") from None
        config_bytes = source.read(os.path.normpath(config_name))
        config = load_json(config_bytes, f"{where}: config")
        config_desc = descriptor_for(DOCKER_CONFIG, config_bytes)
        content.write_blob(config_bytes, config_desc.digest)
        layers = []
        for name in layer_names:
            with source.open(os.path.normpath(name)) as f:
                desc, diff_id = store_layer(content, f)
            media = _DOCKER_MEDIA[_compression_of(desc)]
            layers.append((Descriptor(media, desc.digest, desc.size), diff_id))
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if diff_ids != [d for _, d in layers]:
            raise InvalidArgument(f"{where}: layer contents do not match the config's "
                                  "rootfs.diff_ids")
        manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                    "config": config_desc.to_dict(),
                    "layers": [d.to_dict() for d, _ in layers]}
        data = canonical(manifest)
        target = descriptor_for(DOCKER_MANIFEST, data)
        content.write_blob(data, target.digest)
        for tag in entry.get("RepoTags") or []:
            loaded.append(images.put(namespace, Image(str(parse_reference(tag)), target)))
    return loaded


def _compression_of(desc: Descriptor) -> str:
    if desc.media_type.endswith("gzip"):
        return "gzip"
    if desc.media_type.endswith("zstd"):
        return "zstd"
    return "none"


def save(content: ContentAPI, images: ImageStoreAPI, namespace: str, names: list[str],
         dest: Path) -> None:
    """Write images as a docker-save tar at `dest` (atomically)."""
    entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    layer_files: dict[str, str] = {}
    configs: dict[str, bytes] = {}
    for raw in names:
        ref = parse_reference(raw)
        image = images.get(namespace, str(ref))
        manifest = resolve_manifest(content, image.target)
        config = read_config(content, manifest)
        config_name = config.digest.split(":", 1)[1] + ".json"
        configs[config_name] = content.read_bytes(config.digest)
        paths = []
        for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
            path = diff_id.split(":", 1)[1] + "/layer.tar"
            layer_files.setdefault(path, layer.digest)
            paths.append(path)
        tag = ref.familiar() if ref.tag else ""
        for e in entries:
            if e["Config"] == config_name:
                if tag:
                    e["RepoTags"].append(tag)
                break
        else:
            entries.append({"Config": config_name, "RepoTags": [tag] if tag else [],
                            "Layers": paths})
        if tag and paths:
            repo = tag.rsplit(":", 1)[0]
            repositories.setdefault(repo, {})[ref.tag] = paths[-1].split("/")[0]
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as out, tarfile.open(fileobj=out, mode="w|",
                                              format=tarfile.PAX_FORMAT) as tar:
        for path, digest in layer_files.items():
            layer_id = path.split("/")[0]
            add_dir(tar, layer_id)
            add_bytes(tar, f"{layer_id}/VERSION", b"1.0")
            add_bytes(tar, f"{layer_id}/json", json.dumps({"id": layer_id}).encode())
            _add_uncompressed(tar, content, path, digest)
        for name, data in configs.items():
            add_bytes(tar, name, data)
        add_bytes(tar, "manifest.json", json.dumps(entries).encode())
        add_bytes(tar, "repositories", json.dumps(repositories).encode())
    os.replace(tmp, dest)


def _add_uncompressed(tar: tarfile.TarFile, content: ContentAPI, path: str, digest: str) -> None:
    """docker-save layers are plain tars; decompress through a temp file to learn the size."""
    head = b"".join(content.read(digest, 0, 4))
    if detect_compression(head) == "none":
        add_stream(tar, path, content.info(digest).size, content.read(digest))
        return
    with tempfile.TemporaryFile() as tmp:
        for chunk in iter_decompressed(IterStream(content.read(digest))):
            tmp.write(chunk)
        size = tmp.tell()
        tmp.seek(0)
        info = tarfile.TarInfo(path)
        info.size, info.mode = size, 0o644
        tar.addfile(info, tmp)
