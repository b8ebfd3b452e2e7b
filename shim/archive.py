"""Apply an image layer (tar, tar+gzip, tar+zstd) to a directory, safely.

Every entry is created relative to a directory file descriptor reached by walking its
parent components with O_NOFOLLOW, so nothing can land outside the target: names with
`..` or a leading `/` are refused, a symlink in the middle of a path is refused (a
symlink entry itself may point anywhere: it is only ever created, never followed), and
hard links must name an entry of the same layer. OCI whiteouts become overlayfs ones:
`.wh.NAME` a 0/0 character device NAME, `.wh..wh..opq` the xattr
trusted.overlay.opaque=y on its directory. Owners, modes, times, xattrs, hard links and
device nodes are kept. A hostile or broken layer raises LayerError naming the entry.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, Literal

import zstandard

from shim.errors import InvalidArgument

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_XATTR = "trusted.overlay.opaque"
DEFAULT_MAX_ENTRY_SIZE = 64 << 30
CHUNK = 1 << 20
_ZERO = bytes(CHUNK)

Compression = Literal["none", "gzip", "zstd"]
WhiteoutMode = Literal["overlay", "keep"]
Stream = IO[bytes] | io.RawIOBase
"""Anything with read(): a file, a socket file, a streamed content read."""


class LayerError(InvalidArgument):
    """A layer that cannot be applied: hostile, corrupt or of an unsupported kind."""


@dataclass
class ApplyResult:
    diff_id: str
    """sha256 of the uncompressed tar stream: the layer's DiffID."""
    size: int
    """Bytes of the uncompressed tar stream."""
    entries: int


def detect_compression(head: bytes) -> Compression:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


class _HashingReader(io.RawIOBase):
    """Counts and hashes what passes through, to get the DiffID while extracting."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.hash.update(data)
        self.size += n
        return n

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def decompressed(stream: Stream) -> BinaryIO:
    """The uncompressed tar stream of a layer, whatever its compression."""
    buffered: io.BufferedReader = (
        stream if isinstance(stream, io.BufferedReader)
        else io.BufferedReader(stream, CHUNK)  # type: ignore[type-var,arg-type]
    )
    kind = detect_compression(buffered.peek(4)[:4])
    if kind == "gzip":
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(  # type: ignore[return-value]
            buffered, read_across_frames=True)
    return buffered


def split_name(name: str, what: str = "entry") -> list[str]:
    """Path components of a tar name; absolute names and `..` are refused."""
    if name.startswith("/"):
        raise LayerError(f"{what} {name!r} is an absolute path")
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise LayerError(f"{what} {name!r} contains '..'")
        parts.append(part)
    return parts


class _Tree:
    """The target directory, reached only through O_NOFOLLOW walks from its fd."""

    def __init__(self, target: str) -> None:
        self.fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._cache: dict[tuple[str, ...], int] = {}

    def close(self) -> None:
        self.invalidate()
        os.close(self.fd)

    def invalidate(self, prefix: tuple[str, ...] = ()) -> None:
        """Forget cached fds of `prefix` and below (all when empty): it was removed."""
        for key in [k for k in self._cache if k[: len(prefix)] == prefix]:
            os.close(self._cache.pop(key))

    def dir(self, parts: list[str], entry: str, create: bool = True) -> int:
        """An fd of directory `parts`, made (0755) where missing; never through a symlink."""
        key = tuple(parts)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        fd = os.dup(self.fd)
        try:
            for i, part in enumerate(parts):
                try:
                    nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise LayerError(
                            f"{entry}: {'/'.join(parts[:i + 1])!r} does not exist") from None
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=fd)
                except OSError as exc:
                    where = "/".join(parts[: i + 1])
                    if exc.errno == errno.ELOOP:
                        raise LayerError(
                            f"{entry}: {where!r} is a symlink; refusing to write through it"
                        ) from None
                    if exc.errno == errno.ENOTDIR:
                        st = _lstat(part, fd)
                        if st is not None and stat.S_ISLNK(st.st_mode):
                            raise LayerError(f"{entry}: {where!r} is a symlink; "
                                             "refusing to write through it") from None
                        raise LayerError(f"{entry}: {where!r} is not a directory") from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        if len(self._cache) > 256:
            self.invalidate()
        self._cache[key] = fd
        return fd


def _lstat(name: str, dfd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class _Applier:
    def __init__(self, target: str, same_owner: bool, whiteouts: WhiteoutMode,
                 max_entry_size: int) -> None:
        self.tree = _Tree(target)
        self.same_owner = same_owner
        self.whiteouts = whiteouts
        self.max_entry_size = max_entry_size
        self.dirs: list[tuple[list[str], tarfile.TarInfo]] = []

    def remove(self, parent: list[str], dfd: int, name: str, keep_dir: bool = False) -> None:
        st = _lstat(name, dfd)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            self.tree.invalidate((*parent, name))
            shutil.rmtree(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)

    def apply(self, tar: tarfile.TarFile) -> int:
        count = 0
        for member in tar:
            count += 1
            self.entry(tar, member)
        self.finish_dirs()
        return count

    def entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = split_name(member.name)
        if not parts:
            if member.isdir():
                self.dirs.append(([], member))
            return
        *parent, base = parts
        if member.size > self.max_entry_size or member.size < 0:
            kind = "sparse " if member.issparse() else ""
            raise LayerError(f"entry {member.name!r} declares a {kind}size of {member.size} "
                             f"bytes, over the limit of {self.max_entry_size}")
        if self.whiteouts == "overlay" and base.startswith(WHITEOUT_PREFIX):
            self.whiteout(parent, base, member.name)
            return
        dfd = self.tree.dir(parent, member.name)
        if member.isdir():
            self.remove(parent, dfd, base, keep_dir=True)
            if _lstat(base, dfd) is None:
                os.mkdir(base, 0o700, dir_fd=dfd)
            self.dirs.append((parts, member))
            return
        self.remove(parent, dfd, base)
        if member.isreg():
            self.regular(tar, member, dfd, base)
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=dfd)
            self.metadata(dfd, base, member, symlink=True)
        elif member.islnk():
            self.hardlink(member, dfd, base)
        elif member.ischr() or member.isblk() or member.isfifo():
            self.node(member, dfd, base)
        else:
            raise LayerError(f"entry {member.name!r} has unsupported type {member.type!r}")

    def whiteout(self, parent: list[str], base: str, name: str) -> None:
        dfd = self.tree.dir(parent, name)
        if base == WHITEOUT_OPAQUE:
            os.setxattr(dfd, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return
        real = base[len(WHITEOUT_PREFIX):]
        if not real or real in (".", ".."):
            raise LayerError(f"whiteout {name!r} names nothing")
        self.remove(parent, dfd, real)
        os.mknod(real, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dfd)

    def regular(self, tar: tarfile.TarFile, member: tarfile.TarInfo, dfd: int,
                base: str) -> None:
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dfd)
        try:
            src = tar.extractfile(member)
            if src is None:
                raise LayerError(f"entry {member.name!r}: no data")
            left = member.size
            while left > 0:
                chunk = src.read(min(CHUNK, left))
                if not chunk:
                    raise LayerError(f"entry {member.name!r}: data ends {left} bytes early")
                left -= len(chunk)
                if len(chunk) == CHUNK and chunk == _ZERO:
                    os.lseek(fd, CHUNK, os.SEEK_CUR)
                else:
                    os.write(fd, chunk)
            os.ftruncate(fd, member.size)
            self.metadata(fd, None, member)
        finally:
            os.close(fd)

    def hardlink(self, member: tarfile.TarInfo, dfd: int, base: str) -> None:
        target = split_name(member.linkname, f"hard link target of {member.name!r}")
        if not target:
            raise LayerError(f"entry {member.name!r}: hard link to the layer root")
        *tparent, tbase = target
        what = f"hard link {member.name!r} -> {member.linkname!r}"
        try:
            sfd = self.tree.dir(tparent, what, create=False)
        except LayerError as exc:
            if "does not exist" not in str(exc):
                raise
            sfd, st = -1, None
        else:
            st = _lstat(tbase, sfd)
        if st is None:
            raise LayerError(f"entry {member.name!r}: hard link target "
                             f"{member.linkname!r} is not in this layer")
        if stat.S_ISDIR(st.st_mode):
            raise LayerError(f"entry {member.name!r}: hard link to directory "
                             f"{member.linkname!r}")
        os.link(tbase, base, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)

    def node(self, member: tarfile.TarInfo, dfd: int, base: str) -> None:
        if member.isfifo():
            kind = stat.S_IFIFO
        elif member.ischr():
            kind = stat.S_IFCHR
        else:
            kind = stat.S_IFBLK
        try:
            os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor),
                     dir_fd=dfd)
        except PermissionError:
            if self.same_owner:
                raise
            log.warning("skipping device node %s: not permitted without root", member.name)
            return
        self.metadata(dfd, base, member, symlink=False)

    def metadata(self, where: int, base: str | None, member: tarfile.TarInfo,
                 symlink: bool = False) -> None:
        """Owner, then mode (chown clears set-id bits), then xattrs, then times."""
        if base is None:
            target: int | str = where
            kw: dict[str, object] = {}
            xpath: int | str = where
        else:
            target = base
            kw = {"dir_fd": where, "follow_symlinks": False}
            xpath = f"/proc/self/fd/{where}/{base}"
        if self.same_owner:
            os.chown(target, member.uid, member.gid, **kw)  # type: ignore[arg-type]
        if not symlink:
            if base is None:
                os.fchmod(where, member.mode & 0o7777)
            else:
                os.chmod(base, member.mode & 0o7777, dir_fd=where)
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            xname = key[len("SCHILY.xattr."):]
            if xname.startswith("trusted.overlay."):
                log.warning("dropping %s on %s: reserved for the snapshotter", xname,
                            member.name)
                continue
            raw = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(xpath, xname, raw, follow_symlinks=base is None)
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    log.warning("cannot set xattr %s on %s: %s", xname, member.name, exc)
                    continue
                raise
        mtime_ns = int(member.mtime * 1e9)
        atime = member.pax_headers.get("atime")
        atime_ns = int(float(atime) * 1e9) if atime else mtime_ns
        os.utime(target, ns=(atime_ns, mtime_ns), **kw)  # type: ignore[arg-type]

    def finish_dirs(self) -> None:
        """Directory metadata goes last: creating children would change their times."""
        for parts, member in reversed(self.dirs):
            if not parts:
                self.metadata(self.tree.fd, None, member)
                continue
            *parent, base = parts
            dfd = self.tree.dir(parent, member.name, create=False)
            self.metadata(dfd, base, member)

    def close(self) -> None:
        self.tree.close()


def apply_layer(stream: Stream, target: str | os.PathLike[str], *,
                same_owner: bool | None = None, whiteouts: WhiteoutMode = "overlay",
                max_entry_size: int = DEFAULT_MAX_ENTRY_SIZE) -> ApplyResult:
    """Extract a layer into `target` (an existing directory) and return its DiffID.

    `same_owner` defaults to whether we are root; `whiteouts="keep"` writes `.wh.` files
    as they are (for trees that are not overlay layers).
    """
    if same_owner is None:
        same_owner = os.geteuid() == 0
    hashing = _HashingReader(decompressed(stream))
    reader = io.BufferedReader(hashing, CHUNK)
    applier = _Applier(os.fspath(target), same_owner, whiteouts, max_entry_size)
    try:
        try:
            with tarfile.open(fileobj=reader, mode="r|", errorlevel=2) as tar:
                count = applier.apply(tar)
            hashing.drain()
        except tarfile.TarError as exc:
            raise LayerError(f"layer is not a valid tar: {exc}") from exc
        except (EOFError, gzip.BadGzipFile, zstandard.ZstdError) as exc:
            raise LayerError(f"layer stream is corrupt or truncated: {exc}") from exc
    finally:
        applier.close()
    return ApplyResult("sha256:" + hashing.hash.hexdigest(), hashing.size, count)


def diff_id_of(stream: Stream) -> ApplyResult:
    """DiffID and uncompressed size of a layer, without extracting it."""
    inner = decompressed(stream)
    h = hashlib.sha256()
    size = 0
    try:
        while chunk := inner.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    except (EOFError, gzip.BadGzipFile, zstandard.ZstdError) as exc:
        raise LayerError(f"layer stream is corrupt or truncated: {exc}") from exc
    return ApplyResult("sha256:" + h.hexdigest(), size, 0)


def iter_decompressed(stream: Stream) -> Iterator[bytes]:
    inner = decompressed(stream)
    while chunk := inner.read(CHUNK):
        yield chunk


