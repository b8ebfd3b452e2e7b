"""The content, images and snapshots services of a real shimd, and `shimctl images` on it."""

from __future__ import annotations

import hashlib

import grpc
import pytest

from shim.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from shim.images.remote import ImagesClient
from shim.server import ShimServer
from shim.services import ServiceContext
from shim.snapshots.mount import mounted

pytestmark = pytest.mark.root


@pytest.fixture
def shimd(tmp_path):
    ctx = ServiceContext(root=tmp_path / "root", state=tmp_path / "state", runtime="runc")
    sock = tmp_path / "shim.sock"
    server = ShimServer(ctx, sock).start()
    try:
        yield sock, ctx
    finally:
        server.stop()


@pytest.fixture
def client(shimd):
    channel = grpc.insecure_channel(f"unix:{shimd[0]}")
    yield ImagesClient(channel)
    channel.close()


def shimctl(sock, *argv):
    from shim.ctl.images import main

    return main(["--address", str(sock), "images", *argv])


def test_content_write_verify_resume(client):
    data = b"x" * (3 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    c = client.content
    w = c.writer("remote-1", len(data), digest)
    w.write(data[: 1 << 20])
    w.close()
    assert c.status("remote-1").offset == 1 << 20
    w = c.writer("remote-1", len(data), digest)
    assert w.offset == 1 << 20
    w.write(data[1 << 20:])
    assert w.commit() == digest
    assert c.read_bytes(digest) == data
    assert b"".join(c.read(digest, 10, 5)) == data[10:15]
    with pytest.raises(AlreadyExists):
        c.writer("again", len(data), digest)

    bad = c.writer("remote-bad", 3, "sha256:" + "0" * 64)
    bad.write(b"abc")
    with pytest.raises(FailedPrecondition, match="digest mismatch"):
        bad.commit()
    assert not c.exists("sha256:" + "0" * 64)
    c.update(digest, {"a": "b"})
    assert c.info(digest).labels == {"a": "b"}
    assert [i.digest for i in c.list("labels.a==b")] == [digest]
    c.delete(digest)
    with pytest.raises(NotFound):
        c.info(digest)


def test_shimctl_images_on_shimd(shimd, client, tmp_path, capsys):
    sock, _ = shimd
    assert shimctl(sock, "busybox") == 0
    assert shimctl(sock, "tag", "busybox", "localhost/bb:2") == 0
    assert shimctl(sock, "ls", "-q") == 0
    out = capsys.readouterr().out
    assert "docker.io/library/busybox:latest\nlocalhost/bb:2\n" in out
    saved = tmp_path / "bb.tar"
    assert shimctl(sock, "save", "-o", str(saved), "localhost/bb:2") == 0
    oci = tmp_path / "bb-oci.tar"
    assert shimctl(sock, "save", "--format", "oci", "-o", str(oci), "busybox") == 0
    assert shimctl(sock, "rm", "localhost/bb:2", "busybox") == 0
    assert client.images.list("default") == []
    assert shimctl(sock, "load", str(saved)) == 0
    assert shimctl(sock, "load", str(oci)) == 0
    names = sorted(i.name for i in client.images.list("default"))
    assert names == ["docker.io/library/busybox:latest", "localhost/bb:2"]
    assert shimctl(sock, "rm", "nothing:here") == 1
    assert "NotFound" in capsys.readouterr().err


def test_rootfs_through_services(shimd, client, tmp_path):
    sock, _ = shimd
    assert shimctl(sock, "busybox") == 0
    prepared = client.prepare_container_rootfs("busybox", "c1")
    assert prepared.config.args() == ["sh"]
    assert prepared.mounts[0]["type"] == "overlay"
    again = client.prepare_container_rootfs("busybox", "c1")
    assert again.mounts == prepared.mounts, "idempotent for a restart"
    with mounted(prepared.mounts, tmp_path / "rootfs") as rootfs:
        assert (rootfs / "bin" / "busybox").stat().st_size > 100_000
        (rootfs / "hello").write_text("hi")
    kinds = sorted((s.name, s.kind.value) for s in client.snapshots.list())
    assert kinds[0] == ("default/c1", "active") and kinds[1][1] == "committed"
    with pytest.raises(InvalidArgument, match="snapshotter"):
        from shim.api.v1 import snapshots_pb2
        try:
            client.snapshots.stub.Usage(snapshots_pb2.SnapshotUsageRequest(
                snapshotter="btrfs", key="default/c1"))
        except grpc.RpcError as exc:
            from shim.errors import from_rpc_error
            raise from_rpc_error(exc) from None
    assert client.images.prune(0).snapshots == []
    client.release_container_rootfs("c1")
    client.images.delete("default", "docker.io/library/busybox:latest")
    result = client.images.prune(0)
    assert len(result.snapshots) == 1 and len(result.blobs) == 3


def test_through_shimctl_main(shimd, capsys):
    """The images verbs as shimctl itself registers them (func(client, args))."""
    main = pytest.importorskip("shim.ctl.main").main
    sock, _ = shimd
    assert main(["--address", str(sock), "images", "busybox", "localhost/bb:main"]) == 0
    assert main(["--address", str(sock), "images", "ls"]) == 0
    out = capsys.readouterr().out
    assert "NAME" in out and "localhost/bb:main" in out
