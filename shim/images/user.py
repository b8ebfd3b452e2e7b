"""An image's `User` (docker's `user[:group]`) as an OCI `process.user`.

Names are resolved as docker does, in the image's own /etc/passwd and /etc/group, not
the host's. The two files are read from the image's layers (top layer first, whiteouts
and opaque directories honoured) through a content store, so a client that reaches
shimd over gRPC (shimctl, berthd) resolves them without mounting anything. Only plain
files are read: a passwd that is a link, or a name that is not there, is an error that
says so, rather than a guess.
"""

from __future__ import annotations

import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Any

from shim.archive import decompressed
from shim.content.api import ContentAPI
from shim.errors import InvalidArgument
from shim.images.oci import Manifest
from shim.images.resolve import IterStream

PASSWD = "etc/passwd"
GROUP = "etc/group"
MAX_ID = (1 << 32) - 2  # (uid_t)-1 means "unchanged" to the kernel
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass
class ProcessUser:
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)

    def spec(self) -> dict[str, Any]:
        """The OCI runtime spec's `process.user` object."""
        out: dict[str, Any] = {"uid": self.uid, "gid": self.gid}
        if self.additional_gids:
            out["additionalGids"] = list(self.additional_gids)
        return out


def _numeric(text: str, what: str) -> int | None:
    if not text.isdigit():
        return None
    value = int(text)
    if value > MAX_ID:
        raise InvalidArgument(f"{what} {text} is out of range (0..{MAX_ID})")
    return value


def _entries(data: bytes | None, fields: int) -> list[list[str]]:
    """The well-formed lines of a passwd or group file (comments and junk skipped)."""
    out = []
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        parts = line.split(":")
        if line.startswith("#") or len(parts) < fields or not parts[0]:
            continue
        if not (parts[2].isdigit() and (fields < 4 or parts[3].isdigit())):
            continue
        out.append(parts)
    return out


def needs_files(user: str) -> bool:
    """Whether resolving `user` reads the image's files (it names a user or a group,
    or gives a uid alone, whose primary group comes from /etc/passwd)."""
    name, _, group = user.partition(":")
    return not (name.isdigit() and group.isdigit())


def parse_user(user: str, passwd: bytes | None, group: bytes | None,
               where: str = "the image") -> ProcessUser:
    """`user[:group]`, each a number or a name, against the given file contents
    (None: the file is not in the image)."""
    name, sep, group_part = user.partition(":")
    if not name or (sep and not group_part):
        raise InvalidArgument(f"user {user!r} of {where}: expected user[:group], "
                              "with a name or a number on each side")
    users = _entries(passwd, 4)
    uid = _numeric(name, f"uid of user {user!r} of {where}")
    if uid is not None:
        entry = next((e for e in users if int(e[2]) == uid), None)
    else:
        if passwd is None:
            raise InvalidArgument(f"user {user!r} of {where}: no /etc/passwd in the image "
                                  f"to resolve {name!r}; give a numeric uid")
        entry = next((e for e in users if e[0] == name), None)
        if entry is None:
            raise InvalidArgument(f"user {user!r} of {where}: no user {name!r} in the "
                                  "image's /etc/passwd")
        uid = _numeric(entry[2], f"uid of {name!r} in /etc/passwd of {where}")
    assert uid is not None
    groups = _entries(group, 3)
    if group_part:
        gid = _numeric(group_part, f"gid of user {user!r} of {where}")
        if gid is None:
            if group is None:
                raise InvalidArgument(f"user {user!r} of {where}: no /etc/group in the "
                                      f"image to resolve group {group_part!r}")
            match = next((g for g in groups if g[0] == group_part), None)
            if match is None:
                raise InvalidArgument(f"user {user!r} of {where}: no group {group_part!r} "
                                      "in the image's /etc/group")
            gid = int(match[2])
    else:
        gid = int(entry[3]) if entry is not None else 0
    extra: list[int] = []
    if entry is not None:
        for g in groups:
            members = g[3].split(",") if len(g) > 3 else []
            if entry[0] in members and int(g[2]) != gid and int(g[2]) not in extra:
                extra.append(int(g[2]))
    return ProcessUser(uid, gid, extra)


def _normal(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _hidden_by(names: set[str], path: str) -> bool:
    """Whether a layer with these entries deletes `path` for the layers below it."""
    parts = path.split("/")
    for i in range(len(parts)):
        parent = "/".join(parts[:i])
        prefix = parent + "/" if parent else ""
        if prefix + WHITEOUT + parts[i] in names:
            return True
        if i < len(parts) - 1 and prefix + parts[i] + "/" + OPAQUE in names:
            return True
    return False


def read_image_files(content: ContentAPI, manifest: Manifest,
                     paths: list[str]) -> dict[str, bytes | None]:
    """The contents of regular files of the image's merged tree (None: not there).

    Layers are read from the top down; a file is taken from the highest layer that
    has it, unless a whiteout or an opaque directory of a higher layer hides it.
    """
    wanted = {_normal(p) for p in paths}
    found: dict[str, bytes | None] = {}
    for layer in reversed(manifest.layers):
        if wanted <= found.keys():
            break
        names: set[str] = set()
        data: dict[str, bytes] = {}
        stream = decompressed(IterStream(iter(content.read(layer.digest))))
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = _normal(member.name)
                names.add(name)
                if name in wanted and name not in found:
                    if not member.isreg():
                        raise InvalidArgument(
                            f"/{name} in layer {layer.digest} is not a regular file "
                            "(a link or a directory): cannot resolve users from it")
                    fh = tar.extractfile(member)
                    data[name] = fh.read() if fh is not None else b""
        for path in wanted - found.keys():
            if path in data:
                found[path] = data[path]
            elif _hidden_by(names, path):
                found[path] = None
    return {p: found.get(_normal(p)) for p in paths}


def resolve_image_user(content: ContentAPI, manifest: Manifest, user: str,
                       where: str = "the image") -> ProcessUser | None:
    """The process user of an image's `User` (None when the image sets none)."""
    if not user:
        return None
    if not needs_files(user):
        name, _, group = user.partition(":")
        uid = _numeric(name, f"uid of user {user!r} of {where}")
        gid = _numeric(group, f"gid of user {user!r} of {where}")
        assert uid is not None and gid is not None
        return ProcessUser(uid, gid)
    files = read_image_files(content, manifest, [PASSWD, GROUP])
    return parse_user(user, files[PASSWD], files[GROUP], where)
