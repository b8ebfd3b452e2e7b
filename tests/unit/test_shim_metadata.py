"""The container metadata store."""

from __future__ import annotations

from pathlib import Path

import pytest

from shim.errors import AlreadyExists, InvalidArgument, NotFound
from shim.metadata import ContainerRecord, ContainerStore


def test_crud_per_namespace(tmp_path: Path) -> None:
    store = ContainerStore(tmp_path)
    rec = store.create("a", ContainerRecord(id="web", spec={"x": 1}, labels={"k": "v"}))
    assert rec.created_at > 0
    assert store.get("a", "web").labels == {"k": "v"}
    with pytest.raises(NotFound, match="namespace 'b'"):
        store.get("b", "web")
    with pytest.raises(AlreadyExists, match="already exists"):
        store.create("a", ContainerRecord(id="web", spec={}))
    store.create("b", ContainerRecord(id="web", spec={}))
    assert [r.id for r in store.list("a")] == ["web"]
    rec.image = "busybox"
    store.update("a", rec)
    assert store.get("a", "web").image == "busybox"
    store.delete("a", "web")
    assert store.list("a") == [] and [r.id for r in store.list("b")] == ["web"]
    with pytest.raises(NotFound):
        store.delete("a", "web")
    leftovers = [p.name for p in (tmp_path / "metadata" / "b" / "containers").iterdir()]
    assert leftovers == ["web.json"]  # no temporary files


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-lead", "x" * 77])
def test_ids_are_validated(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="container id"):
        ContainerStore(tmp_path).create("a", ContainerRecord(id=bad, spec={}))
