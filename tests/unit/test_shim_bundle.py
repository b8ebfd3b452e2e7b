"""The default spec and the merge of a caller's partial spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shim.bundle import (
    DEFAULT_CAPABILITIES,
    check_spec,
    default_spec,
    merge_spec,
    rootfs_without_mount,
    write_config,
)
from shim.errors import InvalidArgument


def test_default_spec_is_dockers() -> None:
    spec = default_spec(["sh"], hostname="h1")
    caps = spec["process"]["capabilities"]
    assert caps["bounding"] == DEFAULT_CAPABILITIES and len(DEFAULT_CAPABILITIES) == 14
    assert "CAP_SYS_ADMIN" not in caps["effective"]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert "/proc/sys" in spec["linux"]["readonlyPaths"]
    devices = spec["linux"]["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in devices
    assert {n["type"] for n in spec["linux"]["namespaces"]} == {
        "pid", "ipc", "uts", "mount", "network"}
    assert spec["hostname"] == "h1"
    check_spec(spec)


def test_seccomp_profile_when_available() -> None:
    spec = default_spec(["sh"])
    try:
        import shim.seccomp_profile  # noqa: F401
    except ImportError:
        assert "seccomp" not in spec["linux"]
    else:
        assert spec["linux"]["seccomp"]["defaultAction"]
    assert "seccomp" not in default_spec(["sh"], seccomp=False)["linux"]


def test_merge_objects_replace_arrays_null_removes() -> None:
    base = default_spec(["sh"])
    merged = merge_spec(base, {"process": {"args": ["true"], "cwd": "/tmp"},
                               "hostname": None, "linux": {"maskedPaths": []}})
    assert merged["process"]["args"] == ["true"] and merged["process"]["cwd"] == "/tmp"
    assert merged["process"]["capabilities"] == base["process"]["capabilities"]
    assert "hostname" not in merged and merged["linux"]["maskedPaths"] == []
    assert base["process"]["args"] == ["sh"]  # inputs untouched


@pytest.mark.parametrize("spec, field", [
    ({"ociVersion": "1.0.2"}, r"\$.process"),
    ({"ociVersion": "1.0.2", "process": {"args": []}}, r"\$.process.args"),
    ({"ociVersion": "1.0.2", "process": {"args": [1]}}, r"\$.process.args"),
    ({"ociVersion": "1.0.2", "process": {"args": ["x"], "cwd": "rel"}}, r"\$.process.cwd"),
    ({"process": {"args": ["x"]}}, r"\$.ociVersion"),
])
def test_check_spec_names_the_field(spec: dict, field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        check_spec(spec)


def test_single_bind_needs_no_mount(tmp_path: Path) -> None:
    assert rootfs_without_mount([{"type": "bind", "source": str(tmp_path)}]) == str(tmp_path)
    assert rootfs_without_mount([{"type": "bind", "source": str(tmp_path),
                                  "options": ["ro"]}]) is None
    assert rootfs_without_mount([{"type": "overlay", "source": "overlay"}]) is None
    with pytest.raises(InvalidArgument, match="existing absolute directory"):
        rootfs_without_mount([{"type": "bind", "source": "relative"}])


def test_write_config_is_atomic(tmp_path: Path) -> None:
    write_config(tmp_path, {"a": 1})
    assert json.loads((tmp_path / "config.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
