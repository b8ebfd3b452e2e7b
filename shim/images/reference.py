"""Image references as docker and containerd write them: [domain/]path[:tag][@digest].

Names are normalized the way docker does it: a first component with a `.` or `:` or
`localhost` is a registry (`localhost:5000/app`, `registry.example:443/team/app`);
anything else lives on docker.io, single names under `library/`. No tag and no digest
means `:latest`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shim.content.digest import parse_digest
from shim.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
DEFAULT_TAG = "latest"
MAX_NAME = 255

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


class ReferenceError(InvalidArgument):
    """A reference that cannot be parsed; the message says which part is wrong."""


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """domain/path: the repository, without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What to ask the registry's manifests endpoint for: the digest, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, "")

    def familiar(self) -> str:
        """The short form docker prints: `busybox:latest` for docker.io/library/busybox."""
        name = self.name
        if self.domain == DEFAULT_DOMAIN:
            name = self.path.removeprefix("library/")
        out = name + (":" + self.tag if self.tag else "")
        return out + ("@" + self.digest if self.digest else "")


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN.match(first):
            raise ReferenceError(f"reference {name!r}: invalid registry {first!r}")
        return first, rest
    return DEFAULT_DOMAIN, name


def parse_reference(value: str, default_tag: bool = True) -> Reference:
    """Parse and normalize `value`; ReferenceError says which part is wrong."""
    if not value:
        raise ReferenceError("empty image reference")
    remainder, _, digest = value.partition("@")
    if digest:
        try:
            parse_digest(digest)
        except InvalidArgument as exc:
            raise ReferenceError(f"reference {value!r}: {exc}") from None
    tag = ""
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG.match(tag):
            raise ReferenceError(f"reference {value!r}: invalid tag {tag!r}")
    domain, path = _split_domain(remainder)
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if not path:
        raise ReferenceError(f"reference {value!r}: missing repository name")
    for comp in path.split("/"):
        if not _COMPONENT.match(comp):
            raise ReferenceError(
                f"reference {value!r}: invalid repository component {comp!r} "
                "(lowercase letters, digits and separators '.', '_', '__', '-')")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    if len(f"{domain}/{path}") > MAX_NAME:
        raise ReferenceError(f"reference {value!r}: name longer than {MAX_NAME} characters")
    if not tag and not digest and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)
