"""lowrun features: runc's shape, and what lowrun really supports."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lowrun import OCI_VERSION
from lowrun.features import features


def runc_features(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not installed")
    out = subprocess.run([runc, "features"], cwd=tmp_path, check=True, capture_output=True)
    result: dict = json.loads(out.stdout)  # type: ignore[type-arg]
    return result


def _libseccomp_loads() -> bool:
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return False
    return True


def test_features_has_runcs_shape(tmp_path: Path) -> None:
    theirs = runc_features(tmp_path)
    ours = features()
    assert ours.keys() == theirs.keys()
    assert ours["linux"].keys() == theirs["linux"].keys()
    assert ours["linux"]["cgroup"].keys() == theirs["linux"]["cgroup"].keys()
    assert ours["hooks"] == theirs["hooks"]
    assert ours["linux"]["capabilities"] == theirs["linux"]["capabilities"]
    # every mount option lowrun knows, runc knows too (lowrun refuses tmpcopyup and
    # has no iversion flags)
    assert set(ours["mountOptions"]) <= set(theirs["mountOptions"])
    assert ours["mountOptions"] == sorted(ours["mountOptions"])
    assert set(theirs["linux"]["namespaces"]) <= set(ours["linux"]["namespaces"])
    if ours["linux"]["seccomp"]["enabled"]:
        for key in ("actions", "operators"):
            assert ours["linux"]["seccomp"][key] == theirs["linux"]["seccomp"][key]
        assert set(theirs["linux"]["seccomp"]["archs"]) <= set(ours["linux"]["seccomp"]["archs"])


def test_features_versions_and_support() -> None:
    ours = features()
    assert ours["ociVersionMin"] == "1.0.0"
    assert ours["ociVersionMax"] == OCI_VERSION
    assert ours["linux"]["cgroup"] == {
        "v1": True,
        "v2": True,
        "systemd": False,
        "systemdUser": False,
    }
    assert {"pid", "mount", "uts", "ipc", "network", "cgroup"} <= set(ours["linux"]["namespaces"])
    assert {"bind", "rbind", "ro", "nosuid", "rprivate", "rro"} <= set(ours["mountOptions"])
    assert "tmpcopyup" not in ours["mountOptions"]


def test_features_seccomp_follows_libseccomp() -> None:
    ours = features()
    assert ours["linux"]["seccomp"]["enabled"] == _libseccomp_loads()
    version_key = "io.github.seccomp.libseccomp.version"
    assert (version_key in ours["annotations"]) == ours["linux"]["seccomp"]["enabled"]
    if ours["linux"]["seccomp"]["enabled"]:
        assert "SCMP_ACT_NOTIFY" in ours["linux"]["seccomp"]["actions"]
        assert ours["annotations"][version_key].count(".") == 2


def test_features_is_json() -> None:
    assert json.loads(json.dumps(features())) == features()
