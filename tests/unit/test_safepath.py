"""Resolution inside a root on real, unprivileged directory trees full of hostile symlinks."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lowrun import safepath
from lowrun.errors import SyscallError


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, int, Path]]:
    """(root, an O_PATH fd of it, a host directory outside it)."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("inside\n")
    outside.mkdir()
    (outside / "secret").write_text("host\n")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield root, fd, outside
    os.close(fd)


def test_split_and_splice() -> None:
    assert safepath.split("/a//b/./c/") == ["a", "b", "c"]
    assert safepath.split("../x") == ["..", "x"]
    parts = ["a", "link", "c"]
    assert safepath.splice_link(parts, 1, "/t/u") == (["t", "u", "c"], 0)
    assert safepath.splice_link(parts, 1, "../v") == (["a", "..", "v", "c"], 1)
    assert safepath.splice_link(parts, 2, "w") == (["a", "link", "w"], 2)


def test_ensure_creates_missing_directories(tree: tuple[Path, int, Path]) -> None:
    root, rootfd, _ = tree
    fd = safepath.ensure(rootfd, "/a/b/c")
    try:
        assert (root / "a" / "b" / "c").is_dir()
        assert safepath.container_path(fd, str(root)) == "/a/b/c"
    finally:
        os.close(fd)


def test_ensure_creates_a_file_as_the_last_component(tree: tuple[Path, int, Path]) -> None:
    root, rootfd, _ = tree
    os.close(safepath.ensure(rootfd, "/srv/conf/app.ini", kind="file", mode=0o640))
    assert (root / "srv" / "conf").is_dir()
    assert (root / "srv" / "conf" / "app.ini").is_file()
    # an existing object is returned as it is, whatever kind was asked
    fd = safepath.ensure(rootfd, "/etc/hosts", kind="dir")
    os.close(fd)
    assert (root / "etc" / "hosts").read_text() == "inside\n"


def test_absolute_symlink_is_followed_inside_the_root(tree: tuple[Path, int, Path]) -> None:
    root, rootfd, outside = tree
    (root / "evil").symlink_to(outside)
    fd = safepath.ensure(rootfd, "/evil/sub")
    try:
        assert safepath.container_path(fd, str(root)) == f"{outside}/sub"
    finally:
        os.close(fd)
    assert not (outside / "sub").exists()
    assert (root / str(outside).lstrip("/") / "sub").is_dir()


def test_relative_dotdot_symlink_is_clamped_to_the_root(tree: tuple[Path, int, Path]) -> None:
    root, rootfd, outside = tree
    (root / "etc" / "up").symlink_to("../../../../../../outside")
    fd = safepath.ensure(rootfd, "/etc/up/made")
    os.close(fd)
    assert not (outside / "made").exists()
    assert (root / "outside" / "made").is_dir()


def test_existing_symlink_out_opens_the_inside_file(tree: tuple[Path, int, Path]) -> None:
    root, rootfd, outside = tree
    (root / "etc" / "leak").symlink_to(outside / "secret")
    with pytest.raises(SyscallError) as info:
        safepath.open_in_root(rootfd, "/etc/leak", os.O_RDONLY)
    assert info.value.errno == errno.ENOENT
    (root / "hosts-link").symlink_to("/etc/hosts")
    fd = safepath.open_in_root(rootfd, "/hosts-link", os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"inside\n"
    finally:
        os.close(fd)


def test_dangling_symlink_chain_to_a_file(tree: tuple[Path, int, Path]) -> None:
    root, rootfd, outside = tree
    (root / "a").symlink_to("b")
    (root / "b").symlink_to(str(outside / "file"))
    os.close(safepath.ensure(rootfd, "/a", kind="file"))
    assert not (outside / "file").exists()
    assert (root / str(outside).lstrip("/") / "file").is_file()


def test_symlink_loop_fails_with_eloop(tree: tuple[Path, int, Path]) -> None:
    root, rootfd, _ = tree
    (root / "x").symlink_to("y")
    (root / "y").symlink_to("x")
    with pytest.raises(SyscallError) as info:
        safepath.ensure(rootfd, "/x/z")
    assert info.value.errno == errno.ELOOP


def test_no_symlinks_refuses_any_symlink_on_the_path(tree: tuple[Path, int, Path]) -> None:
    root, rootfd, outside = tree
    (root / "proc").symlink_to(outside)
    with pytest.raises(SyscallError) as info:
        safepath.ensure(rootfd, "/proc", no_symlinks=True)
    assert info.value.errno == errno.ELOOP
    (root / "real").mkdir()
    (root / "link").symlink_to("real")
    with pytest.raises(SyscallError) as info:
        safepath.ensure(rootfd, "/link/sys", no_symlinks=True)
    assert info.value.errno == errno.ELOOP
    assert not (root / "real" / "sys").exists()
    os.close(safepath.ensure(rootfd, "/real/sys", no_symlinks=True))
    assert (root / "real" / "sys").is_dir()


def test_a_file_in_the_middle_is_enotdir(tree: tuple[Path, int, Path]) -> None:
    _, rootfd, _ = tree
    with pytest.raises(SyscallError) as info:
        safepath.ensure(rootfd, "/etc/hosts/x")
    assert info.value.errno == errno.ENOTDIR


def test_container_path_refuses_outside(tree: tuple[Path, int, Path]) -> None:
    root, rootfd, outside = tree
    assert safepath.container_path(rootfd, str(root)) == "/"
    fd = os.open(outside, os.O_PATH)
    try:
        with pytest.raises(SyscallError) as info:
            safepath.container_path(fd, str(root))
        assert info.value.errno == errno.EXDEV
    finally:
        os.close(fd)
    (root.parent / "rootx").mkdir()  # sharing a name prefix is not being inside
    fd = os.open(root.parent / "rootx", os.O_PATH)
    try:
        with pytest.raises(SyscallError):
            safepath.container_path(fd, str(root))
    finally:
        os.close(fd)


def test_mount_id_is_that_of_the_mount(tree: tuple[Path, int, Path]) -> None:
    _, rootfd, _ = tree
    fd = safepath.open_in_root(rootfd, "/etc")
    try:
        assert safepath.mount_id(fd) == safepath.mount_id(rootfd)
        proc = os.open("/proc", os.O_PATH)
        try:
            assert safepath.mount_id(proc) != safepath.mount_id(rootfd)
        finally:
            os.close(proc)
    finally:
        os.close(fd)
