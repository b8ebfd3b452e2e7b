"""Reference parsing and docker-style normalization."""

from __future__ import annotations

import pytest

from shim.images.reference import ReferenceError, parse_reference

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("team/app", "docker.io/team/app:latest"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("localhost:5000/app:v1", "localhost:5000/app:v1"),
        ("localhost/app", "localhost/app:latest"),
        ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t"),
        ("registry.example.com/x", "registry.example.com/x:latest"),
        (f"localhost:5000/app@{D}", f"localhost:5000/app@{D}"),
        (f"localhost:5000/app:v2@{D}", f"localhost:5000/app:v2@{D}"),
        ("my-app__x.y", "docker.io/library/my-app__x.y:latest"),
    ],
)
def test_normalize(raw, want):
    assert str(parse_reference(raw)) == want


def test_parts_and_familiar():
    ref = parse_reference("localhost:5000/team/app:v1")
    assert (ref.domain, ref.path, ref.tag, ref.object) == ("localhost:5000", "team/app", "v1", "v1")
    assert parse_reference("busybox").familiar() == "busybox:latest"
    assert parse_reference("localhost:5000/x").familiar() == "localhost:5000/x:latest"
    assert parse_reference(f"x@{D}").object == D


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("upper/Case", "invalid repository component"),
        ("Upper", "invalid repository component"),
        ("app:bad tag", "invalid tag"),
        ("app@sha256:abc", "hex digits"),
        ("localhost:5000/", "missing repository"),
        ("a//b", "invalid repository component ''"),
        ("bad_-_host:99x/app", "invalid registry|invalid tag"),
        ("x" * 300, "longer than 255"),
    ],
)
def test_invalid(raw, why):
    with pytest.raises(ReferenceError, match=why):
        parse_reference(raw)
