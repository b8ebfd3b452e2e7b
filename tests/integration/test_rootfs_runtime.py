"""Rootfs escapes tried through the runtime binary, with lowrun and with runc.

The same hostile bundles go through `run`: a symlinked mount destination must land
inside the rootfs, a fake /proc must be refused with a clear error, and either way
the host keeps its files and its mount table, and no container is left behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.bundle import base_config
from tests.support.inchild import read_mounts
from tests.support.runtime import Runtime


def _config(*extra: dict[str, Any]) -> dict[str, Any]:
    config = base_config()
    config["mounts"] += list(extra)
    return config


def test_symlinked_destinations_stay_in_the_rootfs(
    runtime: Runtime, bundle_factory: Any, container_id: str, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host\n")
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "from-volume").write_text("volume\n")
    before = read_mounts()
    config = _config(
        {"destination": "/abs", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        {"destination": "/rel/data", "source": str(volume), "options": ["bind", "ro"]},
    )
    script = f"ls {outside}; cat {outside}/../outside-rel/data/from-volume 2>/dev/null; echo end"
    bundle = bundle_factory(["sh", "-c", script], config)
    rootfs = bundle / "rootfs"
    (rootfs / "abs").symlink_to(outside)
    (rootfs / "rel").symlink_to(f"../../../../../../..{tmp_path}/outside-rel")
    result = runtime.run("run", "--bundle", str(bundle), container_id)
    assert result.returncode == 0, result.stderr
    # /abs is a fresh, empty tmpfs inside the rootfs, not the host directory
    assert result.stdout.split() == ["volume", "end"]
    assert sorted(os.listdir(outside)) == ["keep"]
    assert not (tmp_path / "outside-rel").exists()
    assert (rootfs / str(outside).lstrip("/")).is_dir()
    assert read_mounts() == before
    assert runtime.ids() == []


def test_proc_through_a_symlink_is_refused(
    runtime: Runtime, bundle_factory: Any, container_id: str
) -> None:
    before = read_mounts()
    bundle = bundle_factory(["true"], base_config())
    rootfs = bundle / "rootfs"
    (rootfs / "fake" / "self").mkdir(parents=True)
    (rootfs / "proc").rmdir()
    (rootfs / "proc").symlink_to("fake")
    result = runtime.run("run", "--bundle", str(bundle), container_id)
    assert result.returncode != 0
    assert "proc" in result.stderr
    if runtime.name == "lowrun":
        assert "$.mounts[0].destination" in result.stderr
        assert "symlink" in result.stderr
    assert sorted(os.listdir(rootfs / "fake")) == ["self"]
    assert read_mounts() == before
    assert runtime.ids() == []


@pytest.mark.parametrize("kind", ["bind", "tmpfs"])
def test_mount_inside_proc_is_refused(
    runtime: Runtime, bundle_factory: Any, container_id: str, tmp_path: Path, kind: str
) -> None:
    before = read_mounts()
    source = tmp_path / "src"
    source.mkdir()
    if kind == "bind":
        entry = {"destination": "/sneaky", "source": str(source), "options": ["bind"]}
    else:
        entry = {"destination": "/sneaky", "type": "tmpfs", "source": "tmpfs"}
    config = _config(entry)
    bundle = bundle_factory(["true"], config)
    (bundle / "rootfs" / "sneaky").symlink_to("/proc/sys/kernel")
    result = runtime.run("run", "--bundle", str(bundle), container_id)
    if runtime.name == "runc" and kind == "tmpfs":
        # runc 1.1 checks only binds against /proc; lowrun refuses any mount there,
        # because a filesystem over part of /proc is how CVE-2019-16884 fakes procfs.
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert "/proc" in result.stderr
    if runtime.name == "lowrun":
        assert f"$.mounts[{len(config['mounts']) - 1}].destination" in result.stderr
    assert read_mounts() == before
    assert runtime.ids() == []
