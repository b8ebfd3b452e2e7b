"""What a default container cannot do, tried from inside, with lowrun and with runc.

The default container is runc's default spec (`lowrun spec`) plus docker's default
seccomp profile, running tests/support/probe.c as its process. Each test also shows the
premise where it matters (the same call succeeding once the protection is lifted), so
that a refusal is known to come from the protection and not from a broken probe.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from shim.seccomp_profile import default_seccomp_profile
from tests.integration.hardening_support import (
    build_probe,
    default_config,
    errnos,
    run_container,
    with_probe,
)
from tests.support.runtime import Runtime

pytestmark = pytest.mark.root

EPERM, EROFS, ESRCH = errno.EPERM, errno.EROFS, errno.ESRCH
ENOENT, ENOSYS = errno.ENOENT, errno.ENOSYS


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_probe(tmp_path_factory.mktemp("probe"))


def attacks(runtime: Runtime, bundle_factory: Any, probe: Path, cid: str,
            config: dict[str, Any], before: str = "") -> tuple[dict[str, int], str]:
    """Run `probe attacks` (after the shell snippet `before`); its errnos and all output."""
    script = f"{before} /probe attacks {os.getpid()}"
    bundle = with_probe(bundle_factory, probe, ["sh", "-c", script], config)
    out = run_container(runtime, bundle, cid)
    return errnos(out), out


def test_default_container_refuses_every_attack(
    runtime: Runtime, bundle_factory: Any, probe: Path, container_id: str
) -> None:
    got, _ = attacks(runtime, bundle_factory, probe, container_id, default_config())
    # seccomp (docker's profile) answers first for everything it names: EPERM
    for call in ("mount", "umount", "unshare_user", "keyctl", "init_module", "finit_module",
                 "delete_module", "personality_rie", "sethostname"):
        assert got[call] == EPERM, (call, got)
    # capabilities: no CAP_NET_RAW, CAP_MKNOD in runc's default set
    assert got["raw_socket"] == EPERM
    assert got["packet_socket"] == EPERM
    assert got["mknod_disk"] == EPERM
    # read-only mounts: /sys (sysfs ro) and /proc/sys (readonlyPaths)
    assert got["sys_kernel_create"] == EROFS
    assert got["sys_power_state"] == EROFS
    assert got["proc_sys_write"] == EROFS
    # the host's processes do not exist for the container
    assert got["ptrace_host"] == ESRCH
    assert got["kill_host"] == ESRCH


def test_sysrq_trigger_and_uevent_helper(
    runtime: Runtime, bundle_factory: Any, probe: Path, container_id: str
) -> None:
    """Writable only if it exists and is not read-only; this kernel may lack both files."""
    got, _ = attacks(runtime, bundle_factory, probe, container_id, default_config())
    for call, path in (("sysrq_trigger", "/proc/sysrq-trigger"),
                       ("sys_uevent_helper", "/sys/kernel/uevent_helper")):
        expected = EROFS if os.path.exists(path) else ENOENT
        assert got[call] == expected, (call, got[call])


def test_kernel_modules_refused_without_seccomp_too(
    runtime: Runtime, bundle_factory: Any, probe: Path, container_id: str
) -> None:
    """Without the profile, the missing CAP_SYS_MODULE refuses (or, on a kernel built
    without module support, as this one may be, the call does not exist)."""
    config = default_config(seccomp=False)
    got, _ = attacks(runtime, bundle_factory, probe, container_id, config)
    modules = os.path.exists("/proc/modules")
    for call in ("init_module", "finit_module", "delete_module"):
        assert got[call] == (EPERM if modules else ENOSYS), (call, got[call])
    assert got["mount"] == EPERM  # no CAP_SYS_ADMIN either


def test_unshare_user_is_refused_by_seccomp(
    runtime: Runtime, bundle_factory: Any, probe: Path, container_id: str
) -> None:
    with_profile, _ = attacks(runtime, bundle_factory, probe, container_id, default_config())
    without, _ = attacks(runtime, bundle_factory, probe, container_id + "n",
                         default_config(seccomp=False))
    assert with_profile["unshare_user"] == EPERM
    assert with_profile["keyctl"] == EPERM
    assert without["unshare_user"] == 0  # the premise: the kernel alone would allow it
    assert without["keyctl"] == 0


def test_raw_socket_only_with_cap_net_raw(
    runtime: Runtime, bundle_factory: Any, probe: Path, container_id: str
) -> None:
    dropped, _ = attacks(runtime, bundle_factory, probe, container_id, default_config())
    config = default_config(seccomp=False)
    held = [*config["process"]["capabilities"]["bounding"], "CAP_NET_RAW"]
    config["process"]["capabilities"] = {s: held for s in ("bounding", "effective", "permitted")}
    config["linux"]["seccomp"] = default_seccomp_profile(held)
    kept, _ = attacks(runtime, bundle_factory, probe, container_id + "k", config)
    assert dropped["raw_socket"] == EPERM
    assert kept["raw_socket"] == 0  # in the container's own network namespace


def test_no_host_process_is_visible(
    runtime: Runtime, bundle_factory: Any, probe: Path, container_id: str
) -> None:
    got, out = attacks(runtime, bundle_factory, probe, container_id, default_config(),
                       before="echo pids $(ls /proc | grep '^[0-9]');")
    pids = next(line.split()[1:] for line in out.splitlines() if line.startswith("pids"))
    assert "1" in pids
    assert str(os.getpid()) not in pids
    assert len(pids) <= 4  # sh, the $(...) subshell, ls, grep: nothing else
    assert got["ptrace_host"] == ESRCH  # PTRACE_ATTACH to the test's own pid
    assert got["kill_host"] == ESRCH


def test_hostname_cannot_change_without_own_uts_namespace(
    runtime: Runtime, bundle_factory: Any, probe: Path, container_id: str
) -> None:
    config = default_config()
    config["linux"]["namespaces"] = [
        ns for ns in config["linux"]["namespaces"] if ns["type"] != "uts"
    ]
    config.pop("hostname", None)
    host_name = socket.gethostname()
    got, out = attacks(runtime, bundle_factory, probe, container_id, config,
                       before="echo uts $(readlink /proc/self/ns/uts) $(hostname);")
    line = next(line.split() for line in out.splitlines() if line.startswith("uts "))
    assert line[1] == os.readlink("/proc/self/ns/uts")  # the host's UTS namespace
    assert line[2] == host_name
    assert got["sethostname"] == EPERM
    assert socket.gethostname() == host_name
    # and without seccomp, the missing CAP_SYS_ADMIN refuses it as well
    config["linux"].pop("seccomp")
    got, _ = attacks(runtime, bundle_factory, probe, container_id + "n", config)
    assert got["sethostname"] == EPERM


def test_sys_is_read_only_everywhere(
    runtime: Runtime, bundle_factory: Any, probe: Path, container_id: str
) -> None:
    bundle = with_probe(bundle_factory, probe, ["cat", "/proc/self/mountinfo"], default_config())
    out = run_container(runtime, bundle, container_id)
    under_sys = []
    for line in out.splitlines():
        fields = line.split()
        point, options = fields[4], fields[5].split(",")
        fstype = line.split(" - ")[1].split()[0]
        if point == "/sys" or point.startswith("/sys/"):
            under_sys.append(point)
            if runtime.name == "runc" and fstype == "tmpfs":
                # runc 1.1.5 leaves the tmpfs that holds the cgroup v1 hierarchies
                # writable (it is the container's own, empty but for directories);
                # lowrun remounts it read-only as the spec's "ro" asks.
                continue
            assert "ro" in options, line
    assert "/sys" in under_sys
    assert "/sys/fs/cgroup" in under_sys


def _masked_on_this_host() -> list[str]:
    return [p for p in default_config()["linux"]["maskedPaths"] if os.path.exists(p)]


def test_masked_paths_show_nothing(
    runtime: Runtime, bundle_factory: Any, probe: Path, container_id: str
) -> None:
    """/proc/kcore does not exist on this kernel: every masked path that does is checked."""
    masked = _masked_on_this_host()
    assert masked, "no masked path exists on this host"
    script = "; ".join(
        f"echo {p} $(stat -c '%F %t:%T' {p}) $(cat {p} 2>/dev/null | wc -c) $(ls -A {p} | wc -l)"
        for p in masked
    )
    bundle = with_probe(bundle_factory, probe, ["sh", "-c", script], default_config())
    out = run_container(runtime, bundle, container_id)
    seen = {line.split()[0]: line for line in out.splitlines() if line.startswith("/")}
    for path in masked:
        line = seen[path]
        if os.path.isdir(path):
            assert line.endswith(" 0"), line  # an empty directory (a read-only tmpfs)
        else:
            assert "character special file 1:3 0" in line, line  # /dev/null, nothing read
