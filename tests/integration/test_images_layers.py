"""Layers on the real kernel: metadata as root, whiteouts through a real overlay mount,
and many containers of one image sharing its layers on disk."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from shim.archive import OPAQUE_XATTR, apply_layer
from shim.snapshots import OverlaySnapshotter
from shim.snapshots.mount import mounted

pytestmark = pytest.mark.root


def build(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            kind, name = e[0], e[1]
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            data = None
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "file":
                data = e[2]
                info.size, info.mode = len(data), 0o644
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, e[2]
            for k, v in (e[3] if len(e) > 3 else {}).items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def test_owners_xattrs_devices_fifos(tmp_path):
    cap = b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        f = tarfile.TarInfo("usr/bin/ping")
        f.size, f.mode, f.uid, f.gid = 4, 0o4755, 1000, 2000
        f.pax_headers = {"SCHILY.xattr.user.note": "hi",
                         "SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape")}
        tar.addfile(f, io.BytesIO(b"ping"))
        for name, kind, major, minor in (("dev/null", tarfile.CHRTYPE, 1, 3),
                                         ("dev/loop9", tarfile.BLKTYPE, 7, 9),
                                         ("run/fifo", tarfile.FIFOTYPE, 0, 0)):
            d = tarfile.TarInfo(name)
            d.type, d.devmajor, d.devminor, d.mode = kind, major, minor, 0o666
            tar.addfile(d)
        s = tarfile.TarInfo("link")
        s.type, s.linkname, s.uid, s.gid = tarfile.SYMTYPE, "usr/bin/ping", 7, 8
        tar.addfile(s)
    apply_layer(io.BytesIO(buf.getvalue()), tmp_path)
    st = os.stat(tmp_path / "usr/bin/ping")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 2000, 0o4755)
    assert os.getxattr(tmp_path / "usr/bin/ping", "user.note") == b"hi"
    assert os.getxattr(tmp_path / "usr/bin/ping", "security.capability") == cap
    null = os.stat(tmp_path / "dev/null")
    assert stat.S_ISCHR(null.st_mode)
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_ISBLK(os.stat(tmp_path / "dev/loop9").st_mode)
    assert stat.S_ISFIFO(os.stat(tmp_path / "run/fifo").st_mode)
    lst = os.lstat(tmp_path / "link")
    assert (lst.st_uid, lst.st_gid) == (7, 8)


def test_whiteouts_through_overlay(tmp_path):
    """The upper layer deletes a file and replaces a directory: the container sees that."""
    sn = OverlaySnapshotter(tmp_path / "root")
    lower = build([
        ("dir", "etc"), ("file", "etc/keep", b"keep\n"), ("file", "etc/gone", b"gone\n"),
        ("dir", "data"), ("file", "data/old1", b"1"), ("dir", "data/sub"),
        ("file", "data/sub/old2", b"2"),
    ])
    upper = build([
        ("dir", "etc"), ("file", "etc/.wh.gone", b""),
        ("dir", "data"), ("file", "data/.wh..wh..opq", b""), ("file", "data/new", b"new\n"),
    ])
    parent = ""
    for i, layer in enumerate((lower, upper)):
        sn.prepare(f"extract-{i}", parent)
        apply_layer(io.BytesIO(layer), sn.upper_dir(f"extract-{i}"))
        sn.commit(f"layer{i}", f"extract-{i}")
        parent = f"layer{i}"
    layer1 = sn._fs(sn._load()["snapshots"]["layer1"])
    wh = os.lstat(layer1 / "etc" / "gone")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(layer1 / "data", OPAQUE_XATTR) == b"y"

    mounts = sn.prepare("ctr", "layer1")
    with mounted(mounts, tmp_path / "rootfs") as rootfs:
        assert sorted(os.listdir(rootfs / "etc")) == ["keep"]
        assert sorted(os.listdir(rootfs / "data")) == ["new"]
        assert (rootfs / "data" / "new").read_text() == "new\n"
        (rootfs / "etc" / "keep").write_text("changed\n")
    upper_dir = sn.upper_dir("ctr")
    assert (upper_dir / "etc" / "keep").read_text() == "changed\n"
    assert (layer1.parent.parent / "1" / "fs" / "etc" / "keep").read_text() == "keep\n"
    with mounted(sn.view("v", "layer1"), tmp_path / "view") as view:
        assert sorted(os.listdir(view / "data")) == ["new"]
        with pytest.raises(OSError):
            (view / "x").write_text("ro")
    for key in ("ctr", "v", "layer1", "layer0"):
        sn.remove(key)


def test_containers_share_layers_on_disk(tmp_path):
    """Disk use grows by the layer once, not once per container."""
    sn = OverlaySnapshotter(tmp_path / "root")
    big = os.urandom(8 << 20)
    layer = build([("dir", "opt"), ("file", "opt/big.bin", big)])
    sn.prepare("extract", "")
    apply_layer(io.BytesIO(layer), sn.upper_dir("extract"))
    sn.commit("base", "extract")
    after_image = sn.total_usage().size
    assert after_image >= len(big)

    for n in range(20):
        sn.prepare(f"c{n}", "base")
    for n in (0, 19):
        with mounted(sn.mounts(f"c{n}"), tmp_path / f"rootfs{n}") as rootfs:
            assert (rootfs / "opt" / "big.bin").read_bytes()[:64] == big[:64]
    grown = sn.total_usage().size - after_image
    assert grown < 20 * 16 * 1024, f"20 containers added {grown} bytes"
    for n in range(20):
        sn.remove(f"c{n}")
    sn.remove("base")
