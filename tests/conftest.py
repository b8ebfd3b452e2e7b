"""Fixtures shared by every test: the busybox rootfs, bundles, runtimes, leak checks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bundle import make_bundle
from tests.support.rootfs import build_busybox_rootfs
from tests.support.runtime import Runtime, binary_for

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="needs root")
    for item in items:
        if "integration" in item.nodeid or "compat" in item.nodeid or "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs template, built once per test run; copy it before writing to it."""
    return build_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


_ISSUED_IDS: list[str] = []


@pytest.fixture
def container_id() -> str:
    """A unique container id; the session checks at its end that none of them left a trace."""
    cid = "t-" + uuid.uuid4().hex[:12]
    _ISSUED_IDS.append(cid)
    return cid


def _traces_of(ids: set[str]) -> list[str]:
    found: list[str] = []
    with open("/proc/self/mounts") as f:
        found += [f"mount: {line.split()[1]}" for line in f if any(i in line for i in ids)]
    for controller in os.listdir("/sys/fs/cgroup"):
        for dirpath, dirnames, _ in os.walk(f"/sys/fs/cgroup/{controller}"):
            found += [f"cgroup: {dirpath}/{d}" for d in dirnames if d in ids]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if any(i in cmdline for i in ids):
            found.append(f"process {pid}: {cmdline.replace(chr(0), ' ')}")
    return found


@pytest.fixture(scope="session", autouse=True)
def no_leftovers() -> Iterator[None]:
    """After the whole run: no mount, cgroup or process may still carry a test's container id."""
    yield
    if IS_ROOT and _ISSUED_IDS:
        traces = _traces_of(set(_ISSUED_IDS))
        assert not traces, "the tests left these behind:\n" + "\n".join(traces[:20])


@pytest.fixture(params=["lowrun", "runc"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """Each runtime test runs with lowrun and with runc (skipped where runc is missing)."""
    name = request.param
    binary = binary_for(name)
    if binary is None:
        pytest.skip(f"{name} is not installed")
    rt = Runtime(name=name, binary=binary, root=tmp_path / f"{name}-root")
    try:
        yield rt
    finally:
        rt.cleanup()


@pytest.fixture
def bundle_factory(tmp_path: Path, busybox_rootfs: Path):  # type: ignore[no-untyped-def]
    """make(args, config=None) -> a fresh bundle directory with a private rootfs copy."""
    counter = iter(range(1_000_000))

    def make(args: list[str], config: dict | None = None) -> Path:  # type: ignore[type-arg]
        return make_bundle(tmp_path / f"bundle{next(counter)}", busybox_rootfs, args, config)

    return make
