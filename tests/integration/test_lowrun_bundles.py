"""Bad bundles: each a clear error, a non-zero exit, and nothing left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.bundle import base_config
from tests.support.runtime import Runtime


def cgroup_dirs_named(name: str) -> list[str]:
    found = []
    for controller in os.listdir("/sys/fs/cgroup"):
        for dirpath, dirnames, _ in os.walk(f"/sys/fs/cgroup/{controller}"):
            found += [os.path.join(dirpath, d) for d in dirnames if d == name]
    return found


def assert_nothing_left(runtime: Runtime, cid: str) -> None:
    assert runtime.ids() == []
    assert not (runtime.root / cid).exists()
    assert cgroup_dirs_named(cid) == []
    with open("/proc/self/mounts") as f:
        assert cid not in f.read()


def create(runtime: Runtime, bundle: Path, cid: str):
    return runtime.run("create", "--bundle", str(bundle), cid)


def test_missing_bundle(runtime: Runtime, tmp_path: Path, container_id):
    result = create(runtime, tmp_path / "nope", container_id)
    assert result.returncode != 0
    assert "nope" in result.stderr
    assert_nothing_left(runtime, container_id)


def test_missing_config_json(runtime: Runtime, tmp_path: Path, container_id):
    (tmp_path / "rootfs").mkdir()
    result = create(runtime, tmp_path, container_id)
    assert result.returncode != 0
    assert "config.json" in result.stderr
    assert_nothing_left(runtime, container_id)


def test_invalid_json(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["true"])
    (bundle / "config.json").write_text('{"ociVersion": "1.0.2", "process": {')
    result = create(runtime, bundle, container_id)
    assert result.returncode != 0
    if runtime.name == "lowrun":  # runc says only "unexpected EOF"
        assert "config.json" in result.stderr and "line 1" in result.stderr, result.stderr
    assert_nothing_left(runtime, container_id)


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda c: c["process"].__setitem__("args", "sh"), "process.args"),
        (lambda c: c["process"]["user"].__setitem__("uid", "root"), "process.user.uid"),
        (lambda c: c["mounts"][0].__setitem__("destination", 42), "mounts[0].destination"),
        (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "linux.namespaces[6]"),
        (lambda c: c["process"].__setitem__("cwd", "relative/dir"), "process.cwd"),
    ],
)
def test_schema_violations_name_the_json_path(runtime: Runtime, bundle_factory, container_id,
                                              mutate, where):
    config = base_config()
    mutate(config)
    bundle = bundle_factory(["true"], config)
    # make_bundle sets process.args; re-apply the mutation on top of what it wrote
    written = json.loads((bundle / "config.json").read_text())
    mutate(written)
    (bundle / "config.json").write_text(json.dumps(written))
    result = create(runtime, bundle, container_id)
    assert result.returncode != 0
    if runtime.name == "lowrun":
        assert where in result.stderr, result.stderr
    assert_nothing_left(runtime, container_id)


def test_rootfs_not_a_directory(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["true"])
    config = json.loads((bundle / "config.json").read_text())
    config["root"]["path"] = "config.json"
    (bundle / "config.json").write_text(json.dumps(config))
    result = create(runtime, bundle, container_id)
    assert result.returncode != 0
    assert "config.json" in result.stderr or "directory" in result.stderr
    assert_nothing_left(runtime, container_id)


def test_mount_destination_symlink_out_of_rootfs(runtime: Runtime, bundle_factory,
                                                 container_id, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    source = tmp_path / "source"
    source.mkdir()
    (source / "marker").write_text("x")
    config = base_config()
    config["root"]["readonly"] = False
    config["mounts"].append({"destination": "/escape/data", "type": "bind",
                             "source": str(source), "options": ["bind"]})
    bundle = bundle_factory(["sh", "-c", "ls /escape/data"], config)
    os.symlink(str(outside), bundle / "rootfs" / "escape")
    result = runtime.run("run", "--bundle", str(bundle), container_id)
    # Either refused, or the mount landed inside the rootfs: never on the host's path.
    assert os.listdir(outside) == []
    with open("/proc/self/mounts") as f:
        assert str(outside) not in f.read()
    if result.returncode == 0:
        assert result.stdout.strip() == "marker"
    assert runtime.ids() == []


def test_executable_missing(runtime: Runtime, bundle_factory, container_id):
    bundle = bundle_factory(["/no/such/binary"])
    result = runtime.run("run", "--bundle", str(bundle), container_id)
    assert result.returncode != 0
    assert "/no/such/binary" in result.stderr
    assert_nothing_left(runtime, container_id)
