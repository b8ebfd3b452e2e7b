"""The schema files in oci-specs/ are valid draft-04 and accept and refuse what they should."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "oci-specs"
DIGEST = "sha256:" + "ab" * 32


def validator(directory: str, name: str) -> jsonschema.Draft4Validator:
    folder = SPECS / directory
    registry: Registry = Registry().with_resources(
        (path.name, Resource.from_contents(json.loads(path.read_text()), DRAFT4))
        for path in folder.glob("*.json")
    )
    schema = json.loads((folder / name).read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, registry=registry)


@pytest.mark.parametrize(
    "path", sorted(SPECS.glob("*/*.json")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_every_schema_file_is_valid_draft4(path: Path) -> None:
    jsonschema.Draft4Validator.check_schema(json.loads(path.read_text()))


def descriptor(media_type: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": DIGEST, "size": 1234, **extra}


MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": descriptor("application/vnd.oci.image.config.v1+json"),
    "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip")],
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
}
INDEX = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            platform={"architecture": "amd64", "os": "linux"},
        )
    ],
}
CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "Entrypoint": None, "Labels": {"a": "b"}},
    "rootfs": {"type": "layers", "diff_ids": [DIGEST]},
    "history": [{"created_by": "ADD rootfs.tar /", "empty_layer": False}],
}
STATE = {"ociVersion": "1.2.0", "id": "c1", "status": "running", "pid": 42, "bundle": "/b"}


@pytest.mark.parametrize(
    ("directory", "name", "document", "change"),
    [
        ("image-spec", "image-manifest-schema.json", MANIFEST, {"schemaVersion": 1}),
        ("image-spec", "image-manifest-schema.json", MANIFEST, {"config": {"digest": DIGEST}}),
        (
            "image-spec",
            "image-manifest-schema.json",
            MANIFEST,
            {"layers": [descriptor("application/vnd.oci.image.layer.v1.tar", digest="sha256:")]},
        ),
        (
            "image-spec",
            "image-index-schema.json",
            INDEX,
            {
                "manifests": [
                    descriptor(
                        "application/vnd.oci.image.manifest.v1+json", platform={"os": "linux"}
                    )
                ]
            },
        ),
        ("image-spec", "image-index-schema.json", INDEX, {"manifests": None}),
        ("image-spec", "config-schema.json", CONFIG, {"rootfs": {"type": "layers"}}),
        ("image-spec", "config-schema.json", CONFIG, {"config": {"Cmd": "sh"}}),
        ("image-spec", "content-descriptor.json", descriptor("text/plain"), {"size": -1}),
        ("runtime-spec", "state-schema.json", STATE, {"status": "paused-ish"}),
        ("runtime-spec", "state-schema.json", STATE, {"bundle": "relative"}),
    ],
)
def test_documents_accepted_and_refused(
    directory: str, name: str, document: dict[str, Any], change: dict[str, Any]
) -> None:
    check = validator(directory, name)
    assert list(check.iter_errors(document)) == []
    assert list(check.iter_errors({**document, **change})) != []
