"""An image's User as an OCI process.user, from the image's own /etc/passwd and /etc/group
read out of its layers (no root: a content store in a temporary directory)."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from shim.content import ContentStore
from shim.errors import InvalidArgument
from shim.images import build
from shim.images.oci import Manifest
from shim.images.resolve import resolve_manifest
from shim.images.user import needs_files, parse_user, read_image_files, resolve_image_user

PASSWD = (b"root:x:0:0:root:/root:/bin/sh\n# a comment\nbroken line\n"
          b"web:x:1000:100::/srv:/bin/false\nnobody:x:65534:65534::/:/bin/false\n")
GROUP = b"root:x:0:\nusers:x:100:\nstaff:x:50:web,other\nwww:x:33:web\n"


@pytest.mark.parametrize(("user", "expected"), [
    ("0", (0, 0, [])),
    ("web", (1000, 100, [50, 33])),
    ("1000", (1000, 100, [50, 33])),
    ("4321", (4321, 0, [])),
    ("web:staff", (1000, 50, [33])),
    ("nobody:7", (65534, 7, [])),
    ("4321:www", (4321, 33, [])),
])
def test_parse_user(user: str, expected: tuple[int, int, list[int]]) -> None:
    got = parse_user(user, PASSWD, GROUP)
    assert (got.uid, got.gid, got.additional_gids) == expected


def test_spec_shape() -> None:
    assert parse_user("web", PASSWD, GROUP).spec() == {
        "uid": 1000, "gid": 100, "additionalGids": [50, 33]}
    assert parse_user("5:6", None, None).spec() == {"uid": 5, "gid": 6}


@pytest.mark.parametrize(("user", "passwd", "group", "message"), [
    ("ghost", PASSWD, GROUP, "no user 'ghost' in the image's /etc/passwd"),
    ("web:ghosts", PASSWD, GROUP, "no group 'ghosts' in the image's /etc/group"),
    ("web", None, GROUP, "no /etc/passwd in the image"),
    ("0:staff", PASSWD, None, "no /etc/group in the image"),
    (":0", PASSWD, GROUP, r"expected user\[:group\]"),
    ("web:", PASSWD, GROUP, r"expected user\[:group\]"),
    ("4294967295", PASSWD, GROUP, "out of range"),
])
def test_bad_users(user: str, passwd: bytes | None, group: bytes | None, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        parse_user(user, passwd, group, where="image x")
    assert "image x" in str(info.value)


def test_needs_files() -> None:
    assert not needs_files("1:2")
    assert needs_files("1") and needs_files("web") and needs_files("1:staff")


def _layer(entries: list[tuple[str, bytes | None, str]]) -> bytes:
    """A gzip'd tar of (name, data or None for a directory, link target for a symlink)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data, link in entries:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return gzip.compress(raw.getvalue())


def _image(tmp_path: Path, *layers: bytes) -> tuple[ContentStore, Manifest]:
    content = ContentStore(tmp_path)
    stored = [build.store_layer(content, io.BytesIO(layer)) for layer in layers]
    target = build.make_image(content, stored, {"User": "web"})
    return content, resolve_manifest(content, target)


def test_top_layer_wins_and_whiteouts_hide(tmp_path: Path) -> None:
    base = _layer([("etc", None, ""), ("etc/passwd", PASSWD, ""), ("./etc/group", GROUP, "")])
    upper = _layer([("etc", None, ""), ("etc/passwd", b"web:x:7:8::/:/bin/sh\n", ""),
                    ("etc/.wh.group", b"", "")])
    content, manifest = _image(tmp_path, base, upper)
    files = read_image_files(content, manifest, ["/etc/passwd", "etc/group", "etc/shadow"])
    assert files == {"/etc/passwd": b"web:x:7:8::/:/bin/sh\n", "etc/group": None,
                     "etc/shadow": None}
    user = resolve_image_user(content, manifest, "web")
    assert user is not None and (user.uid, user.gid) == (7, 8)


def test_opaque_directory_hides_lower_files(tmp_path: Path) -> None:
    base = _layer([("etc/passwd", PASSWD, ""), ("etc/group", GROUP, "")])
    upper = _layer([("etc/.wh..wh..opq", b"", ""), ("etc/group", b"g:x:9:\n", "")])
    content, manifest = _image(tmp_path, base, upper)
    assert read_image_files(content, manifest, ["etc/passwd", "etc/group"]) == {
        "etc/passwd": None, "etc/group": b"g:x:9:\n"}
    with pytest.raises(InvalidArgument, match="no /etc/passwd"):
        resolve_image_user(content, manifest, "web", where="image y")


def test_a_linked_passwd_is_refused(tmp_path: Path) -> None:
    content, manifest = _image(tmp_path, _layer([("etc/passwd", None, "/host/passwd")]))
    with pytest.raises(InvalidArgument, match=r"/etc/passwd in layer .* not a regular file"):
        resolve_image_user(content, manifest, "web")


def test_numeric_user_and_group_read_nothing(tmp_path: Path) -> None:
    content, manifest = _image(tmp_path, _layer([("etc/passwd", None, "/elsewhere")]))
    user = resolve_image_user(content, manifest, "12:34")
    assert user is not None and user.spec() == {"uid": 12, "gid": 34}
    assert resolve_image_user(content, manifest, "") is None
