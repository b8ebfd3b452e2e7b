# ruff: noqa: F811
# (pytest fixtures are imported by name and used as arguments)
"""What the bundle writer gives a container, seen from inside it; rootfs mounts; logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from shim.bundle import DEFAULT_CAPABILITIES
from shim.client import Client, LogConfig, Mount, Stdio
from shim.logs import read_entries
from tests.integration.shim_support import (  # noqa: F401 - fixtures
    Shimd,
    client,
    remove,
    rootfs,
    run_container,
    shim_runtime,
    shimd,
)

pytestmark = pytest.mark.root

CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}

CHECKER = r"""
grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status
echo "timer_list=$(wc -c < /proc/timer_list)"
touch /proc/sys/kernel/berth-probe 2>/dev/null && echo sys=rw || echo sys=ro
echo "hostname=$(hostname)"
ls /sys/class/net | tr '\n' ' '; echo
"""


def _facts(text: str) -> dict[str, str]:
    facts = {}
    for line in text.splitlines():
        for sep in (":", "="):
            if sep in line:
                key, _, value = line.partition(sep)
                facts[key.strip()] = value.strip()
                break
    return facts


def test_default_spec_seen_from_inside(
    shimd: Shimd, client: Client, rootfs: Path, tmp_path: Path
) -> None:
    cid = shimd.container_name()
    out = tmp_path / "facts"
    run_container(client, cid, ["sh", "-c", CHECKER], rootfs, stdio=Stdio(stdout=str(out)))
    client.start(cid)
    assert client.wait(cid, timeout=30).exit_status == 0
    remove(client, cid)
    facts = _facts(out.read_text())
    expected = sum(1 << CAP_NUMBERS[c] for c in DEFAULT_CAPABILITIES)
    assert int(facts["CapEff"], 16) == expected and int(facts["CapBnd"], 16) == expected
    try:
        import shim.seccomp_profile  # noqa: F401
    except ImportError:
        pass
    else:
        assert facts["Seccomp"] == "2"  # filter mode: docker's profile is on
    if Path("/proc/timer_list").exists():
        assert facts["timer_list"] == "0"  # masked: /dev/null over it
    assert facts["sys"] == "ro"
    assert facts["hostname"] == cid[:12]
    assert out.read_text().splitlines()[-1].split() == ["lo"]  # a new, empty netns


def test_overlay_and_readonly_bind_rootfs(
    shimd: Shimd, client: Client, rootfs: Path, tmp_path: Path
) -> None:
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    cid = shimd.container_name()
    run_container(client, cid, ["sh", "-c", "echo written > /etc/motd"], rootfs, rootfs_mounts=[
        Mount("overlay", "overlay",
              [f"lowerdir={rootfs}", f"upperdir={upper}", f"workdir={work}"])])
    bundle = shimd.state / "tasks" / "default" / cid / "rootfs"
    assert bundle.is_dir() and (bundle / "bin" / "busybox").exists()
    client.start(cid)
    assert client.wait(cid, timeout=30).exit_status == 0
    remove(client, cid)
    assert (upper / "etc" / "motd").read_text() == "written\n"
    assert not (rootfs / "etc" / "motd").exists()
    assert not bundle.exists()  # unmounted and removed

    cid = shimd.container_name()
    run_container(client, cid, ["sh", "-c", "touch /probe"], rootfs,
                  rootfs_mounts=[Mount("bind", str(rootfs), ["rbind", "ro"])])
    client.start(cid)
    assert client.wait(cid, timeout=30).exit_status != 0  # read-only
    remove(client, cid)
    assert not (rootfs / "probe").exists()


def test_json_log_rotates(shimd: Shimd, client: Client, rootfs: Path, tmp_path: Path) -> None:
    cid = shimd.container_name()
    log = tmp_path / f"{cid}-json.log"
    run_container(client, cid, ["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line-$i; "
                                "i=$((i+1)); done"], rootfs,
                  log=LogConfig(str(log), max_size=4096, max_files=3))
    client.start(cid)
    assert client.wait(cid, timeout=30).exit_status == 0
    remove(client, cid)
    assert sorted(p.name for p in tmp_path.glob(f"{cid}-json.log*")) == [
        log.name, log.name + ".1", log.name + ".2"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.glob(f"{cid}-json.log*"))
    lines = [e["log"] for e in read_entries(log)]
    assert lines[-1] == "line-399\n"
    assert lines == [f"line-{i}\n" for i in range(400 - len(lines), 400)]


def test_rootfs_from_a_snapshot(shimd: Shimd, client: Client, rootfs: Path) -> None:
    """A container with a snapshot_key and no rootfs mounts runs on the snapshot that
    the snapshots service prepared (when that service is part of shimd)."""
    pytest.importorskip("shim.services.snapshots")
    import shutil

    from shim.api.v1 import snapshots_pb2, snapshots_pb2_grpc

    snapshots = snapshots_pb2_grpc.SnapshotsStub(client.channel)
    key = shimd.container_name("snap")
    mounts = snapshots.Prepare(snapshots_pb2.PrepareSnapshotRequest(
        snapshotter="overlayfs", key=key), timeout=30).mounts
    assert [m.type for m in mounts] == ["bind"]
    shutil.copytree(rootfs, mounts[0].source, symlinks=True, dirs_exist_ok=True)
    cid = shimd.container_name()
    client.create_container(cid, {"process": {"args": ["sh", "-c", "echo hi > /from-snap"]}},
                            snapshot_key=key)
    client.create_task(cid)
    client.start(cid)
    assert client.wait(cid, timeout=30).exit_status == 0
    remove(client, cid)
    assert (Path(mounts[0].source) / "from-snap").read_text() == "hi\n"
    snapshots.Remove(snapshots_pb2.RemoveSnapshotRequest(snapshotter="overlayfs", key=key),
                     timeout=30)
