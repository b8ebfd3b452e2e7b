"""The overlay snapshotter's bookkeeping: kinds, parents, mounts, removal rules, usage."""

from __future__ import annotations

import pytest

from shim.errors import AlreadyExists, FailedPrecondition, NotFound
from shim.snapshots import Kind, OverlaySnapshotter


@pytest.fixture
def sn(tmp_path):
    return OverlaySnapshotter(tmp_path)


def opts(mounts):
    (m,) = mounts
    return m["type"], {o.split("=", 1)[0]: o.split("=", 1)[-1] for o in m["options"]}


def test_layers_chain_and_mounts(sn):
    m = sn.prepare("l1-extract")
    assert m[0]["type"] == "bind" and "rw" in m[0]["options"]
    (sn.upper_dir("l1-extract") / "a").write_text("1")
    sn.commit("chain1", "l1-extract")
    sn.prepare("l2-extract", "chain1")
    (sn.upper_dir("l2-extract") / "b").write_text("2")
    sn.commit("chain2", "l2-extract")

    kind, o = opts(sn.prepare("ctr", "chain2", labels={"container": "ctr"}))
    lower = o["lowerdir"].split(":")
    assert kind == "overlay"
    assert [p.split("/")[-2] for p in lower] == ["2", "1"], "nearest layer first"
    assert o["upperdir"].endswith("/3/fs") and o["workdir"].endswith("/3/work")
    assert sn.mounts("ctr") == sn.mounts("ctr")

    vkind, vo = opts(sn.view("v", "chain2"))
    assert vkind == "overlay" and "upperdir" not in vo
    assert sn.view("v1", "chain1")[0]["options"] == ["rbind", "ro"]

    infos = {i.name: i for i in sn.list()}
    assert infos["chain2"].parent == "chain1" and infos["chain2"].kind == Kind.COMMITTED
    assert infos["ctr"].kind == Kind.ACTIVE and infos["ctr"].labels == {"container": "ctr"}
    assert sn.usage("chain1").inodes == 2


def test_rules(sn):
    sn.prepare("a")
    with pytest.raises(AlreadyExists):
        sn.prepare("a")
    with pytest.raises(FailedPrecondition, match="not committed"):
        sn.prepare("b", "a")
    with pytest.raises(NotFound):
        sn.prepare("b", "missing")
    sn.commit("A", "a")
    with pytest.raises(NotFound):
        sn.stat("a")
    with pytest.raises(FailedPrecondition, match="no mounts"):
        sn.mounts("A")
    sn.prepare("child", "A")
    with pytest.raises(FailedPrecondition, match="has children: child"):
        sn.remove("A")
    sn.remove("child")
    sn.remove("A")
    assert sn.list() == []
    assert list(sn.dirs.iterdir()) == []


def test_state_survives_a_new_instance(sn, tmp_path):
    sn.prepare("x")
    sn.update("x", {"k": "v"})
    again = OverlaySnapshotter(tmp_path)
    assert again.stat("x").labels == {"k": "v"}


def test_too_many_layers_for_one_mount_is_a_clear_error(sn):
    parent = ""
    for i in range(120):
        sn.prepare(f"x{i}", parent, check_mount=False)
        sn.commit(f"layer{i}", f"x{i}")
        parent = f"layer{i}"
    with pytest.raises(FailedPrecondition, match="over the kernel's 4096"):
        sn.prepare("ctr", parent)
    assert not sn.exists("ctr")
    assert sum(1 for _ in sn.dirs.iterdir()) == 120
