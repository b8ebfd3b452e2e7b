"""Hostile layers are refused with a clear error, and nothing is written outside."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from shim.archive import LayerError, apply_layer


def make_tar(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    """entries: (TarInfo, data or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def reg(name, data=b"pwned\n"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def sym(name, target):
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, None


def hardlink(name, target):
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE
    info.linkname = target
    return info, None


@pytest.fixture
def dirs(tmp_path):
    target = tmp_path / "layer"
    outside = tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("host data\n")
    return target, outside, secret


def apply_bytes(data: bytes, target, **kw):
    return apply_layer(io.BytesIO(data), target, same_owner=False, whiteouts="keep", **kw)


def assert_outside_untouched(outside, secret):
    assert sorted(os.listdir(outside)) == ["secret"]
    assert secret.read_text() == "host data\n"
    assert secret.stat().st_nlink == 1


def test_dotdot_traversal(dirs):
    target, outside, secret = dirs
    with pytest.raises(LayerError, match=r"'\.\./outside/pwned'.*'\.\.'"):
        apply_bytes(make_tar([reg("../outside/pwned")]), target)
    with pytest.raises(LayerError, match=r"'\.\.'"):
        apply_bytes(make_tar([reg("a/../../outside/pwned")]), target)
    assert_outside_untouched(outside, secret)


def test_absolute_path(dirs):
    target, outside, secret = dirs
    with pytest.raises(LayerError, match="absolute path"):
        apply_bytes(make_tar([reg(str(outside / "pwned"))]), target)
    assert_outside_untouched(outside, secret)


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_symlink_then_write_through_it(dirs, link):
    target, outside, secret = dirs
    dest = str(outside) if link == "absolute" else "../outside"
    tar = make_tar([sym("evil", dest), reg("evil/pwned"), reg("evil/secret")])
    with pytest.raises(LayerError, match="'evil' is a symlink; refusing to write through it"):
        apply_bytes(tar, target)
    assert_outside_untouched(outside, secret)
    assert os.readlink(target / "evil") == dest


def test_symlink_replacing_directory_then_write(dirs):
    target, outside, secret = dirs
    d = tarfile.TarInfo("d")
    d.type = tarfile.DIRTYPE
    tar = make_tar([(d, None), reg("d/ok"), sym("d", str(outside)), reg("d/pwned")])
    with pytest.raises(LayerError, match="symlink"):
        apply_bytes(tar, target)
    assert_outside_untouched(outside, secret)


def test_hard_link_to_host_file(dirs):
    target, outside, secret = dirs
    for linkname in (str(secret), "../outside/secret"):
        with pytest.raises(LayerError, match="hard link target"):
            apply_bytes(make_tar([hardlink("hl", linkname)]), target)
    with pytest.raises(LayerError, match="symlink"):
        apply_bytes(make_tar([sym("s", str(outside)), hardlink("hl", "s/secret")]), target)
    with pytest.raises(LayerError, match="not in this layer"):
        apply_bytes(make_tar([hardlink("hl", "etc/passwd")]), target, )
    assert_outside_untouched(outside, secret)


def test_hard_link_to_symlink_links_the_symlink_itself(dirs):
    target, outside, secret = dirs
    apply_bytes(make_tar([sym("s", str(secret)), hardlink("hl", "s")]), target)
    assert os.readlink(target / "hl") == str(secret)
    assert os.lstat(target / "hl").st_ino == os.lstat(target / "s").st_ino
    assert_outside_untouched(outside, secret)


def sparse_pax_member(name: str, realsize: int) -> bytes:
    """A PAX 1.0 GNU sparse member: a one-hole map that claims `realsize` bytes."""
    sparse_map = b"1\n0\n0\n".ljust(512, b"\0")
    info = tarfile.TarInfo("GNUSparseFile.0/" + name)
    info.size = len(sparse_map)
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(realsize),
    }
    return make_tar([(info, sparse_map)])


def test_huge_sparse_header(dirs):
    target, _, _ = dirs
    with pytest.raises(LayerError, match=r"'huge' declares a sparse size of 1152921504606846976"):
        apply_bytes(sparse_pax_member("huge", 1 << 60), target)
    assert os.listdir(target) == []


def test_small_sparse_file_is_kept_sparse(dirs):
    target, _, _ = dirs
    apply_bytes(sparse_pax_member("holes", 100 << 20), target)
    st = (target / "holes").stat()
    assert st.st_size == 100 << 20
    assert st.st_blocks * 512 < (1 << 20)


def test_huge_plain_header(dirs):
    target, _, _ = dirs
    info = tarfile.TarInfo("big")
    info.size = 1 << 40
    header = info.tobuf(tarfile.GNU_FORMAT)
    with pytest.raises(LayerError, match="'big' declares a size of 1099511627776 bytes"):
        apply_bytes(header + b"\0" * 1024, target)


def test_truncated_layer(dirs):
    target, _, _ = dirs
    data = make_tar([reg("f", b"x" * 100_000)])
    with pytest.raises(LayerError, match=r"data ends|truncated|not a valid tar"):
        apply_bytes(data[:20_000], target)


def test_garbage_is_not_a_tar(dirs):
    target, _, _ = dirs
    with pytest.raises(LayerError):
        apply_bytes(b"\x1f\x8b" + b"garbage" * 100, target)


def test_reserved_overlay_xattrs_are_dropped(dirs, caplog):
    target, _, _ = dirs
    info, data = reg("f")
    info.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc"}
    apply_bytes(make_tar([(info, data)]), target)
    assert "dropping trusted.overlay.redirect" in caplog.text
    assert "trusted.overlay.redirect" not in os.listxattr(target / "f")
