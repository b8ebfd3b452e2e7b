"""lowrun spec: the default config is exactly what runc spec writes (but ociVersion)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lowrun import OCI_VERSION
from lowrun.errors import UsageError
from lowrun.spec.default import default_spec
from lowrun.spec.load import validate_config


def runc_output(tmp_path: Path, *args: str) -> Any:
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not installed")
    subprocess.run([runc, *args], cwd=tmp_path, check=True, capture_output=True)
    return json.loads((tmp_path / "config.json").read_text())


def test_default_spec_is_what_runc_spec_writes(tmp_path: Path) -> None:
    expected = runc_output(tmp_path, "spec")
    expected["ociVersion"] = OCI_VERSION
    ours = default_spec()
    assert ours == expected
    # same key order too, so that `lowrun spec` and `runc spec` files diff cleanly
    assert json.dumps(ours, indent="\t") == json.dumps(expected, indent="\t")


def test_default_spec_version_and_validity() -> None:
    spec = default_spec()
    assert spec["ociVersion"] == "1.2.0"
    validate_config(spec)


def test_default_spec_is_a_fresh_copy() -> None:
    first = default_spec()
    first["process"]["args"].append("-c")
    first["mounts"][0]["options"] = ["x"]
    assert default_spec()["process"]["args"] == ["sh"]
    assert "options" not in default_spec()["mounts"][0]


def test_rootless_is_refused_clearly() -> None:
    with pytest.raises(
        UsageError, match=r"--rootless: lowrun does not support rootless containers.*as root"
    ):
        default_spec(rootless=True)
