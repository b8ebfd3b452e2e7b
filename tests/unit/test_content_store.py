"""The content store: verified, atomic, resumable writes; reads, labels, deletes."""

from __future__ import annotations

import hashlib

import pytest

from shim.content import ContentStore, digest_bytes, parse_digest
from shim.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable

DATA = b"hello berth\n" * 1000
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path):
    return ContentStore(tmp_path)


def test_write_commit_read(store, tmp_path):
    with store.writer("ref1", total=len(DATA), expected=DIGEST) as w:
        w.write(DATA[:100])
        w.write(DATA[100:])
        assert w.commit() == DIGEST
    path = tmp_path / "content" / "blobs" / "sha256" / DIGEST.split(":")[1]
    assert path.read_bytes() == DATA
    assert store.info(DIGEST).size == len(DATA)
    assert b"".join(store.read(DIGEST, offset=12, size=24, chunk=5)) == DATA[12:36]
    assert [i.digest for i in store.list()] == [DIGEST]
    assert store.list_statuses() == []


def test_digest_mismatch_commits_nothing(store):
    w = store.writer("bad", total=len(DATA), expected="sha256:" + "0" * 64)
    w.write(DATA)
    with pytest.raises(FailedPrecondition, match="digest mismatch"):
        w.commit()
    assert store.list() == []
    assert store.list_statuses() == [], "bad bytes must not be resumed"


def test_size_mismatch_commits_nothing(store):
    w = store.writer("short", total=len(DATA) + 1)
    w.write(DATA)
    with pytest.raises(FailedPrecondition, match="expected"):
        w.commit()
    assert store.list() == []


def test_resume_after_interruption(store):
    w = store.writer("pull-1", total=len(DATA), expected=DIGEST)
    w.write(DATA[:5000])
    w.close()
    status = store.status("pull-1")
    assert (status.offset, status.total, status.expected) == (5000, len(DATA), DIGEST)
    w2 = store.writer("pull-1", total=len(DATA), expected=DIGEST)
    assert w2.offset == 5000
    w2.write(DATA[5000:])
    assert w2.commit() == DIGEST
    assert store.read_bytes(DIGEST) == DATA


def test_changed_expectation_restarts_ingest(store):
    w = store.writer("r", total=10, expected="sha256:" + "1" * 64)
    w.write(b"0123456789")
    w.close()
    w2 = store.writer("r", total=len(DATA), expected=DIGEST)
    assert w2.offset == 0
    w2.close()


def test_one_writer_per_ref(store):
    w = store.writer("locked")
    with pytest.raises(Unavailable, match="locked"):
        store.writer("locked")
    w.close()
    store.writer("locked").close()


def test_existing_content_and_labels(store):
    assert store.write_blob(DATA) == DIGEST
    with pytest.raises(AlreadyExists):
        store.writer("again", expected=DIGEST)
    store.update(DIGEST, {"a": "1", "b": "2"})
    assert store.update(DIGEST, {"b": ""}).labels == {"a": "1"}
    store.delete(DIGEST)
    with pytest.raises(NotFound):
        store.info(DIGEST)
    with pytest.raises(NotFound):
        store.delete(DIGEST)


def test_abort(store):
    w = store.writer("gone")
    w.write(b"x")
    w.close()
    store.abort("gone")
    with pytest.raises(NotFound):
        store.status("gone")


@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "0" * 32, "nocolon", "sha256:" + "G" * 64])
def test_bad_digests(bad):
    with pytest.raises(InvalidArgument, match="digest"):
        parse_digest(bad)


def test_digest_bytes():
    assert digest_bytes(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_racing_writers_of_one_blob(store):
    """Writers racing for one ingest: one commits, the others see it exist; the blob is
    never written through a stale lock."""
    import threading
    import time

    results, errors = [], []

    def write():
        for _ in range(500):
            try:
                w = store.writer("race", len(DATA), DIGEST)
            except AlreadyExists:
                results.append("exists")
                return
            except Unavailable:
                time.sleep(0.001)
                continue
            try:
                w.truncate(0)
                w.write(DATA)
                results.append(w.commit())
            except Exception as exc:
                errors.append(exc)
            finally:
                w.close()
            return

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert DIGEST in results and len(results) == 6
    assert store.read_bytes(DIGEST) == DATA
    assert store.list_statuses() == []
