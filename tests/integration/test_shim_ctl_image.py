# ruff: noqa: F811
# (pytest fixtures are imported by name and used as arguments)
"""`shimctl run --image` over a real shimd, with lowrun and runc: the rootfs an overlay
snapshot of the image, the process from its config, and nothing left behind."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shim.client import Client
from shim.images import build
from shim.images.remote import ImagesClient
from shim.snapshots import Kind
from tests.integration.shim_support import (  # noqa: F401 - fixtures
    Shimd,
    client,
    shim_runtime,
    shimd,
)
from tests.integration.test_shim_ctl import ctl

pytestmark = pytest.mark.root


@pytest.fixture
def images(shimd: Shimd, client: Client) -> Iterator[ImagesClient]:
    """shimd's image services, with the busybox image built by `shimctl images busybox`."""
    r = ctl(shimd, "images", "busybox")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("docker.io/library/busybox:latest sha256:")
    yield ImagesClient(client.channel, client.namespace)


def _active_snapshots(images: ImagesClient) -> list[str]:
    return [s.name for s in images.snapshots.list() if s.kind is Kind.ACTIVE]


def _mounts_under(shimd: Shimd) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if str(shimd.dir) in line.split()[4]]


def _nothing_left(shimd: Shimd, client: Client, images: ImagesClient) -> None:
    assert client.list_containers() == [] and client.list_tasks() == []
    assert _active_snapshots(images) == []
    assert _mounts_under(shimd) == []


def _make_image(images: ImagesClient, ref: str, config: dict[str, object],
                extra_group: bytes = b"") -> None:
    """A busybox image with its own config (and, optionally, more /etc/group lines in
    a second layer, so that the file is read from the top layer)."""
    layers = [build.store_layer(images.content, io.BytesIO(build.busybox_layer()))]
    if extra_group:
        import tarfile

        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            data = b"root:x:0:\nnogroup:x:65534:\n" + extra_group
            info = tarfile.TarInfo("etc/group")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        raw.seek(0)
        layers.append(build.store_layer(images.content, raw))
    target = build.make_image(images.content, layers, config)
    build.name_image(images.images, images.namespace, ref, target)


def test_run_rm_image_echo(shimd: Shimd, client: Client, images: ImagesClient) -> None:
    cid = shimd.container_name()
    r = ctl(shimd, "run", "--rm", "--image", "busybox", cid, "echo", "hello")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello\n", "")
    _nothing_left(shimd, client, images)


def test_default_command_env_cwd_and_exit_code(shimd: Shimd, client: Client,
                                               images: ImagesClient) -> None:
    """busybox's Cmd is ["sh"]: with stdin at EOF it exits 0; fed a script it runs it."""
    assert images.prepare_container_rootfs("busybox", "probe").config.cmd == ["sh"]
    images.release_container_rootfs("probe")
    r = ctl(shimd, "run", "--rm", "--image", "busybox", shimd.container_name())
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    r = ctl(shimd, "run", "--rm", "-i", "--image", "busybox", shimd.container_name(),
            input="echo in-sh; exit 3\n")
    assert (r.returncode, r.stdout) == (3, "in-sh\n"), r.stderr
    r = ctl(shimd, "run", "--rm", "--image", "busybox", "-e", "FOO=bar", shimd.container_name(),
            "sh", "-c", 'echo "$PATH|$FOO"; pwd; id -u; test -f /bin/busybox; exit 42')
    assert r.returncode == 42, r.stderr
    assert r.stdout.splitlines() == [
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|bar", "/", "0"]
    _nothing_left(shimd, client, images)


def test_image_config_entrypoint_user_workdir(shimd: Shimd, client: Client,
                                              images: ImagesClient) -> None:
    _make_image(images, "localhost/cfg:1", {
        "Entrypoint": ["sh", "-c"], "Cmd": ['echo "$(id -u):$(id -g):$(id -G)|$(pwd)|$GREET"'],
        "Env": ["PATH=/bin", "GREET=hi"], "WorkingDir": "/tmp", "User": "nobody"},
        extra_group=b"staff:x:50:nobody\n")
    r = ctl(shimd, "run", "--rm", "--image", "localhost/cfg:1", shimd.container_name())
    assert (r.returncode, r.stdout) == (0, "65534:65534:65534 50|/tmp|hi\n"), r.stderr
    r = ctl(shimd, "run", "--rm", "--image", "localhost/cfg:1", "--cwd", "/etc",
            "-e", "GREET=bye", shimd.container_name(), "echo $(id -u)/$(pwd)/$GREET")
    assert (r.returncode, r.stdout) == (0, "65534//etc/bye\n"), r.stderr
    _make_image(images, "localhost/cfg:2", {"Cmd": ["id"], "User": "1234:staff"},
                extra_group=b"staff:x:50:\n")
    r = ctl(shimd, "run", "--rm", "--image", "localhost/cfg:2", shimd.container_name())
    assert (r.returncode, r.stdout.split()[:2]) == (0, ["uid=1234", "gid=50(staff)"]), r.stderr
    _nothing_left(shimd, client, images)


def test_failures_before_the_task_leave_nothing(shimd: Shimd, client: Client,
                                                images: ImagesClient) -> None:
    r = ctl(shimd, "run", "--rm", "--image", "localhost/missing:1", shimd.container_name(),
            "true")
    assert r.returncode == 1
    assert "'localhost/missing:1' not found" in r.stderr and "pull" in r.stderr
    _make_image(images, "localhost/ghost:1", {"Cmd": ["true"], "User": "ghost"})
    r = ctl(shimd, "run", "--image", "localhost/ghost:1", shimd.container_name())
    assert r.returncode == 1 and "no user 'ghost'" in r.stderr
    _make_image(images, "localhost/nocmd:1", {})
    r = ctl(shimd, "run", "--image", "localhost/nocmd:1", shimd.container_name())
    assert r.returncode == 1 and "has no Entrypoint or Cmd" in r.stderr
    r = ctl(shimd, "run", "--runtime", "/nonexistent/runtime", "--image", "busybox",
            shimd.container_name(), "true")
    assert r.returncode == 1, r.stderr
    _nothing_left(shimd, client, images)
    for argv, message in ((["run", "x", "true"], "one of the arguments --rootfs --image"),
                          (["run", "--rootfs", "/", "--image", "busybox", "x"],
                           "not allowed with")):
        r = ctl(shimd, *argv)
        assert r.returncode == 2 and message in r.stderr


def test_existing_container_id_keeps_its_snapshot(shimd: Shimd, client: Client,
                                                  images: ImagesClient) -> None:
    cid = shimd.container_name()
    assert ctl(shimd, "run", "-d", "--image", "busybox", cid, "sleep", "1000").returncode == 0
    r = ctl(shimd, "run", "--rm", "--image", "busybox", cid, "true")
    assert r.returncode == 1 and "exists" in r.stderr
    assert _active_snapshots(images) == [f"default/{cid}"]
    assert ctl(shimd, "tasks", "rm", "-f", cid).returncode == 0
    assert ctl(shimd, "containers", "rm", cid).returncode == 0
    _nothing_left(shimd, client, images)


def test_detached_then_kill_and_rm_release_the_snapshot(shimd: Shimd, client: Client,
                                                        images: ImagesClient) -> None:
    cid = shimd.container_name()
    r = ctl(shimd, "run", "-d", "--image", "busybox", cid, "sh", "-c",
            "echo data > /written; exec sleep 1000")
    assert r.returncode == 0, r.stderr
    row = ctl(shimd, "tasks", "ls").stdout.splitlines()[1].split()
    assert row[0] == cid and row[2] == "RUNNING"
    assert ctl(shimd, "containers", "ls").stdout.splitlines()[1].split()[:2] == [
        cid, "docker.io/library/busybox:latest"]
    assert _active_snapshots(images) == [f"default/{cid}"]
    assert any(m.endswith(f"/tasks/default/{cid}/rootfs") for m in _mounts_under(shimd))
    deadline = time.monotonic() + 20
    while not _upper_has(images, cid, "written"):
        assert time.monotonic() < deadline, "the container's write never reached its upperdir"
        time.sleep(0.1)
    assert ctl(shimd, "tasks", "kill", "-s", "KILL", cid).returncode == 0
    while "STOPPED" not in ctl(shimd, "tasks", "ls").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert ctl(shimd, "tasks", "rm", cid).returncode == 0
    assert _mounts_under(shimd) == []
    assert _active_snapshots(images) == [f"default/{cid}"], "kept while the container is"
    assert ctl(shimd, "containers", "rm", cid).returncode == 0
    _nothing_left(shimd, client, images)
    assert images.images.prune(0).snapshots == [], "the image's layers stay in use"


def _upper_has(images: ImagesClient, cid: str, name: str) -> bool:
    """Whether the container's upperdir (from the snapshot's overlay mount) has `name`."""
    options = images.snapshots.mounts(f"default/{cid}")[0]["options"]
    upper = next(o.partition("=")[2] for o in options if o.startswith("upperdir="))
    return (Path(upper) / name).exists()


def test_delete_keeps_snapshots_the_caller_owns(shimd: Shimd, client: Client,
                                                images: ImagesClient) -> None:
    """Containers.Delete removes only the snapshot prepare_container_rootfs made for
    that container; one the caller prepared under its own key stays its own."""
    top = images.images.unpack(images.namespace, "docker.io/library/busybox:latest")
    images.snapshots.prepare("mine", top)
    cid = shimd.container_name()
    client.create_container(cid, {"process": {"args": ["true"]}}, snapshot_key="mine")
    client.delete_container(cid)
    assert _active_snapshots(images) == ["mine"]
    images.snapshots.remove("mine")
    prepared = images.prepare_container_rootfs("busybox", cid)
    client.create_container(cid, {"process": {"args": ["true"]}},
                            snapshot_key=prepared.snapshot_key)
    client.delete_container(cid)
    _nothing_left(shimd, client, images)


def test_run_image_in_another_namespace(shimd: Shimd, client: Client,
                                        images: ImagesClient) -> None:
    """The image and the snapshot are the namespace's: busybox of `default` is not
    seen from `ns2` until it is built there; the snapshot is keyed `ns2/ID`."""
    cid = shimd.container_name()
    r = ctl(shimd, "run", "--rm", "--image", "busybox", cid, "true", namespace="ns2")
    assert r.returncode == 1 and "not found in namespace 'ns2'" in r.stderr
    assert ctl(shimd, "images", "busybox", namespace="ns2").returncode == 0
    r = ctl(shimd, "run", "-d", "--image", "busybox", cid, "sleep", "1000", namespace="ns2")
    assert r.returncode == 0, r.stderr
    assert _active_snapshots(images) == [f"ns2/{cid}"]
    ns2 = client.with_namespace("ns2")
    ns2.delete_task(cid, force=True)
    ns2.delete_container(cid)
    assert ns2.list_containers() == []
    _nothing_left(shimd, client, images)


def test_an_orphan_snapshot_is_not_reused(shimd: Shimd, client: Client,
                                          images: ImagesClient) -> None:
    """A snapshot NS/ID left by a run that died before creating its container: a new
    container of that id starts from the image, without the old upperdir's files."""
    cid = shimd.container_name()
    images.prepare_container_rootfs("busybox", cid)
    options = images.snapshots.mounts(f"default/{cid}")[0]["options"]
    upper = next(o.partition("=")[2] for o in options if o.startswith("upperdir="))
    (Path(upper) / "stale").write_text("from a dead run")
    r = ctl(shimd, "run", "--rm", "--image", "busybox", cid, "sh", "-c",
            "test -e /stale && echo stale || echo fresh")
    assert (r.returncode, r.stdout) == (0, "fresh\n"), r.stderr
    _nothing_left(shimd, client, images)
