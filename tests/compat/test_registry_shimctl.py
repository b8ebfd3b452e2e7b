"""`shimctl images push/pull` through a real shimd against a real registry, then run it."""

from __future__ import annotations

import pytest

from shim.ctl.images import main as shimctl_images
from shim.images.remote import ImagesClient
from shim.server import ShimServer
from shim.services import ServiceContext
from tests.compat.registry_support import REGISTRY, run_registry
from tests.integration.images_support import run_in_image

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(REGISTRY is None, reason="docker-registry not installed")]


def test_push_rm_pull_run_through_shimd(tmp_path, capsys):
    import grpc

    ctx = ServiceContext(root=tmp_path / "root", state=tmp_path / "state", runtime="runc")
    sock = tmp_path / "shim.sock"
    server = ShimServer(ctx, sock).start()
    try:
        with run_registry(tmp_path / "registry") as reg:
            def ctl(*argv):
                return shimctl_images(["--address", str(sock), "images", *argv])

            ref = f"{reg.host}/ctl/busybox:1"
            assert ctl("busybox") == 0
            assert ctl("tag", "busybox", ref) == 0
            assert ctl("push", "--plain-http", "--chunked", "-q", ref) == 0
            pushed = capsys.readouterr().out.split()[-1]
            assert ctl("rm", ref, "busybox") == 0
            assert ctl("prune", "--grace", "0") == 0
            assert "removed 3 blobs" in capsys.readouterr().out
            assert ctl("pull", "--plain-http", ref) == 0
            assert capsys.readouterr().out.split() == [ref, pushed]
            channel = grpc.insecure_channel(f"unix:{sock}")
            try:
                snaps = ImagesClient(channel).snapshots.list()
            finally:
                channel.close()
            assert [s.kind.value for s in snaps] == ["committed"], "pull unpacked it"
            out = run_in_image(ctx.root, ref, ["echo", "via shimd"], tmp_path)
            assert out.stdout == "via shimd\n", out.stderr
    finally:
        server.stop()
