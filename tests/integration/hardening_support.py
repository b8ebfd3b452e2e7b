"""Helpers for the hardening tests: the default container and a probe that runs inside it.

The default container is what the issue calls one: runc's default spec as `lowrun spec`
writes it, with docker's default seccomp profile (resolved for that spec's bounding set),
the terminal off and the process replaced. The probe is tests/support/probe.c, built
static once per test module and copied into each bundle's rootfs.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shim.seccomp_profile import default_seccomp_profile
from tests.support.bundle import make_bundle
from tests.support.runtime import LOWRUN, Runtime

PROBE_SOURCE = Path(__file__).resolve().parents[1] / "support" / "probe.c"
PROBE_IN_ROOTFS = "/probe"
HOST_ROOT_ID = 100000
"""The host uid (and gid) of a user-namespaced container's root."""
ID_RANGE = 65536

_spec_cache: dict[str, Any] = {}

BundleFactory = Callable[..., Path]


def lowrun_spec() -> dict[str, Any]:
    """`lowrun spec`'s config.json, written once per process."""
    if "spec" not in _spec_cache:
        with tempfile.TemporaryDirectory() as work:
            subprocess.run([str(LOWRUN), "spec", "--bundle", work], check=True, timeout=60)
            _spec_cache["spec"] = json.loads(Path(work, "config.json").read_text())
    return copy.deepcopy(_spec_cache["spec"])


def default_config(args: list[str] | None = None, seccomp: bool = True) -> dict[str, Any]:
    """runc's default spec plus docker's default seccomp profile for its capabilities."""
    config = lowrun_spec()
    config["process"]["terminal"] = False
    if args is not None:
        config["process"]["args"] = args
    if seccomp:
        bounding = config["process"]["capabilities"]["bounding"]
        config["linux"]["seccomp"] = default_seccomp_profile(list(bounding))
    return config


def build_probe(work: Path) -> Path:
    """Compile probe.c statically (it runs in a busybox rootfs without a libc)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    out = work / "probe"
    done = subprocess.run(
        [gcc, "-static", "-O2", "-o", str(out), str(PROBE_SOURCE)],
        capture_output=True, text=True, timeout=120,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot build a static probe: {done.stderr[-300:]}")
    return out


def with_probe(
    bundle_factory: BundleFactory, probe: Path, args: list[str], config: dict[str, Any],
    mode: int = 0o755,
) -> Path:
    """A bundle whose rootfs has the probe at /probe."""
    bundle = Path(bundle_factory(args, config))
    target = bundle / "rootfs" / PROBE_IN_ROOTFS.lstrip("/")
    shutil.copy2(probe, target)
    os.chmod(target, mode)
    return bundle


def parse_kv(text: str) -> dict[str, str]:
    """The probe's "name=value" lines (other lines ignored)."""
    result = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key.strip()] = value.strip()
    return result


def errnos(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in parse_kv(text).items() if v.lstrip("-").isdigit()}


def run_container(runtime: Runtime, bundle: Path, cid: str, **kw: Any) -> str:
    done = runtime.run("run", "--bundle", str(bundle), cid, timeout=kw.pop("timeout", 60), **kw)
    assert done.returncode == 0, f"{runtime.name}: rc={done.returncode} {done.stderr}"
    return done.stdout


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def init_pid(runtime: Runtime, cid: str) -> int:
    return int(runtime.state(cid)["pid"])


def wait_stopped(runtime: Runtime, cid: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while runtime.state(cid)["status"] != "stopped":
        if time.monotonic() > deadline:
            raise AssertionError(f"{cid} still running after {timeout}s")
        time.sleep(0.05)


@pytest.fixture(name="open_dir")
def open_dir_fixture() -> Iterator[Path]:
    """A work directory the mapped root (host uid 100000) can traverse.

    pytest's tmp_path sits under a 0700 directory of host root: a user-namespaced init
    could not reach its own rootfs there, with runc as with lowrun.
    """
    path = Path(tempfile.mkdtemp(prefix="berth-userns-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def userns_config(args: list[str], caps: list[str] | None = None) -> dict[str, Any]:
    config = default_config(args)
    config["linux"]["namespaces"].append({"type": "user"})
    mapping = [{"containerID": 0, "hostID": HOST_ROOT_ID, "size": ID_RANGE}]
    config["linux"]["uidMappings"] = mapping
    config["linux"]["gidMappings"] = mapping
    if caps is not None:
        config["process"]["capabilities"] = {
            s: caps for s in ("bounding", "effective", "permitted")
        }
        config["linux"]["seccomp"] = default_seccomp_profile(caps)
    return config


def userns_bundle(work: Path, busybox_rootfs: Path, probe: Path, config: dict[str, Any],
                  binds: list[tuple[Path, str]] | None = None) -> Path:
    config = dict(config)
    config["mounts"] = [
        *config["mounts"],
        *({"destination": dest, "type": "bind", "source": str(src), "options": ["bind"]}
          for src, dest in binds or []),
    ]
    bundle = make_bundle(work / "bundle", busybox_rootfs, config["process"]["args"], config)
    shutil.copy2(probe, bundle / "rootfs" / "probe")
    # the rootfs belongs to the mapped root, as a user-namespaced image must
    subprocess.run(["chown", "-R", "-h", f"{HOST_ROOT_ID}:{HOST_ROOT_ID}",
                    str(bundle / "rootfs")], check=True)
    bundle.chmod(0o711)
    return bundle
