"""Layer application without root: compressions, DiffIDs, modes, times, links, replacement."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile

import pytest
import zstandard

from shim.archive import apply_layer, detect_compression, diff_id_of


def sample_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("etc")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o750, 1_000_000
        tar.addfile(d)
        f = tarfile.TarInfo("etc/conf")
        data = b"key=value\n"
        f.size, f.mode, f.mtime = len(data), 0o640, 1_234_567
        tar.addfile(f, io.BytesIO(data))
        h = tarfile.TarInfo("etc/conf.link")
        h.type, h.linkname = tarfile.LNKTYPE, "etc/conf"
        tar.addfile(h)
        s = tarfile.TarInfo("bin/sh")
        s.type, s.linkname = tarfile.SYMTYPE, "/bin/busybox"
        tar.addfile(s)
        again = tarfile.TarInfo("etc/conf")
        data2 = b"key=second\n"
        again.size, again.mode, again.mtime = len(data2), 0o600, 1_234_568
        tar.addfile(again, io.BytesIO(data2))
    return buf.getvalue()


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_compressions_same_tree_and_diff_id(tmp_path, compression):
    raw = sample_tar()
    blob = {"none": raw, "gzip": gzip.compress(raw),
            "zstd": zstandard.ZstdCompressor().compress(raw)}[compression]
    assert detect_compression(blob) == compression
    result = apply_layer(io.BytesIO(blob), tmp_path, same_owner=False)
    assert result.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert result.size == len(raw)
    assert diff_id_of(io.BytesIO(blob)).diff_id == result.diff_id
    conf = tmp_path / "etc" / "conf"
    assert conf.read_bytes() == b"key=second\n"
    assert conf.stat().st_mode & 0o7777 == 0o600
    assert conf.stat().st_mtime == 1_234_568
    assert (tmp_path / "etc").stat().st_mode & 0o7777 == 0o750
    assert (tmp_path / "etc").stat().st_mtime == 1_000_000
    assert (tmp_path / "etc" / "conf.link").read_bytes() == b"key=value\n"
    assert os.readlink(tmp_path / "bin" / "sh") == "/bin/busybox"
