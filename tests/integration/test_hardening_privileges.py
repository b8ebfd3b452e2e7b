"""Privileges a container's processes cannot gain, and what `exec` gives a new process.

- no_new_privs: a setuid-root program in the rootfs, run as uid 1000, stays uid 1000;
- user namespaces: the container's root is host uid 100000, its files are owned by
  that uid on the host, and it cannot read a host root file even with DAC capabilities;
- exec: the new process has the init's namespaces, cgroup, capabilities, seccomp
  filter, no_new_privs and user, compared field by field from the host.
Each runs with lowrun and with runc.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.hardening_support import (
    HOST_ROOT_ID,
    ID_RANGE,
    build_probe,
    default_config,
    errnos,
    init_pid,
    open_dir_fixture,  # noqa: F401  (the open_dir fixture)
    parse_kv,
    proc_status,
    run_container,
    userns_bundle,
    userns_config,
    wait_stopped,
    with_probe,
)
from tests.support.bundle import make_bundle
from tests.support.runtime import Runtime

pytestmark = pytest.mark.root

STATUS_FIELDS = (
    "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
    "NoNewPrivs", "Seccomp", "Seccomp_filters",
)
NS_NAMES = ("cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "user", "uts")


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_probe(tmp_path_factory.mktemp("probe"))


# --------------------------------------------------------------- no_new_privs


def _setuid_run(runtime: Runtime, bundle_factory: Any, probe: Path, cid: str,
                nnp: bool) -> dict[str, str]:
    config = default_config(["/probe", "ids"])
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    config["process"]["noNewPrivileges"] = nnp
    bundle = with_probe(bundle_factory, probe, config["process"]["args"], config, mode=0o4755)
    st = (bundle / "rootfs" / "probe").stat()
    assert st.st_uid == 0 and st.st_mode & 0o4000  # a setuid-root binary in the image
    return parse_kv(run_container(runtime, bundle, cid))


def test_setuid_binary_gains_nothing_with_no_new_privs(
    runtime: Runtime, bundle_factory: Any, probe: Path, container_id: str
) -> None:
    got = _setuid_run(runtime, bundle_factory, probe, container_id, nnp=True)
    assert (got["uid"], got["euid"], got["nnp"]) == ("1000", "1000", "1")
    assert int(got["capeff"], 16) == 0


def test_setuid_binary_becomes_root_without_no_new_privs(
    runtime: Runtime, bundle_factory: Any, probe: Path, container_id: str
) -> None:
    """The premise: the same binary, same user, same caps, without the flag, is root."""
    got = _setuid_run(runtime, bundle_factory, probe, container_id, nnp=False)
    assert (got["uid"], got["euid"], got["nnp"]) == ("1000", "0", "0")
    bounding = 1 << 5 | 1 << 10 | 1 << 29  # KILL, NET_BIND_SERVICE, AUDIT_WRITE
    assert int(got["capeff"], 16) == bounding  # root again, up to the bounding set


# --------------------------------------------------------------- user namespaces


def test_userns_root_is_an_unprivileged_host_uid(
    runtime: Runtime, busybox_rootfs: Path, probe: Path, open_dir: Path, container_id: str
) -> None:
    shared = open_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    secret = open_dir / "secret"
    secret.write_text("host root only\n")
    secret.chmod(0o600)
    # even CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: they hold in the namespace only
    caps = ["CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_CHOWN", "CAP_FOWNER"]
    script = ("exec >/shared/log 2>&1; id -u; touch /shared/made-inside; mkdir /shared/dir-inside; "
              "cat /secret; echo cat=$?; chown 0:0 /secret; echo chown=$?; "
              "ls -ln /secret; cat /proc/self/uid_map; sleep 1000")
    config = userns_config(["sh", "-c", script], caps)
    bundle = userns_bundle(open_dir, busybox_rootfs, probe, config,
                           [(shared, "/shared"), (secret, "/secret")])
    log = shared / "log"
    done = runtime.run("run", "-d", "--bundle", str(bundle), container_id)
    assert done.returncode == 0, done.stderr
    pid = init_pid(runtime, container_id)
    try:
        status = proc_status(pid)
        assert status["Uid"].split() == [str(HOST_ROOT_ID)] * 4
        assert status["Gid"].split() == [str(HOST_ROOT_ID)] * 4
        assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", str(HOST_ROOT_ID),
                                                                    str(ID_RANGE)]
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
        _wait_for(lambda: log.exists() and "0 100000" in " ".join(log.read_text().split()))
    finally:
        runtime.run("delete", "--force", container_id)
    text = log.read_text()
    lines = text.splitlines()
    assert lines[0] == "0"  # root inside
    assert "cat=1" in lines
    assert "chown=1" in lines
    assert "host root only" not in text
    assert " 65534 " in next(line for line in lines if line.endswith("/secret"))  # unmapped
    for name in ("made-inside", "dir-inside", "log"):
        st = (shared / name).stat()
        assert (st.st_uid, st.st_gid) == (HOST_ROOT_ID, HOST_ROOT_ID)
    assert secret.stat().st_uid == 0 and secret.read_text() == "host root only\n"


def _wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_userns_default_container_refuses_the_attacks(
    runtime: Runtime, busybox_rootfs: Path, probe: Path, open_dir: Path, container_id: str
) -> None:
    config = userns_config(["/probe", "attacks", str(os.getpid())])
    bundle = userns_bundle(open_dir, busybox_rootfs, probe, config)
    got = errnos(run_container(runtime, bundle, container_id))
    for call in ("mount", "unshare_user", "keyctl", "init_module", "sethostname"):
        assert got[call] == errno.EPERM, (call, got)
    assert got["sys_kernel_create"] == errno.EROFS
    assert got["ptrace_host"] == errno.ESRCH


# --------------------------------------------------------------- exec


def _ns(pid: int) -> dict[str, str]:
    return {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in NS_NAMES}


def _same_root(a: int, b: int) -> bool:
    sa, sb = os.stat(f"/proc/{a}/root/"), os.stat(f"/proc/{b}/root/")
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _lsm_label(pid: int) -> bytes | int:
    """The process's LSM label, or the errno when no LSM that has labels is active."""
    try:
        return Path(f"/proc/{pid}/attr/current").read_bytes()
    except OSError as exc:
        return exc.errno or -1


@pytest.mark.parametrize("userns", [False, True], ids=["plain", "userns"])
def test_exec_joins_everything_the_init_has(
    runtime: Runtime, busybox_rootfs: Path, probe: Path, open_dir: Path, container_id: str,
    userns: bool,
) -> None:
    args = ["sleep", "1000"]
    config = userns_config(args) if userns else default_config(args)
    config["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 7]}
    if userns:
        bundle = userns_bundle(open_dir, busybox_rootfs, probe, config)
    else:
        bundle = make_bundle(open_dir / "bundle", busybox_rootfs, args, config)
        shutil.copy2(probe, bundle / "rootfs" / "probe")
    done = runtime.run("run", "-d", "--bundle", str(bundle), container_id)
    assert done.returncode == 0, done.stderr
    pid_file = open_dir / "exec.pid"
    try:
        init = init_pid(runtime, container_id)
        done = runtime.run("exec", "-d", "--pid-file", str(pid_file), container_id,
                           "sleep", "1000")
        assert done.returncode == 0, done.stderr
        exec_pid = int(pid_file.read_text())
        init_status, exec_status = proc_status(init), proc_status(exec_pid)
        for field in STATUS_FIELDS:
            assert exec_status[field] == init_status[field], field
        assert init_status["Seccomp"] == "2"
        assert init_status["NoNewPrivs"] == "1"
        expected_uid = str(HOST_ROOT_ID + 1000 if userns else 1000)
        assert exec_status["Uid"].split() == [expected_uid] * 4
        assert _ns(exec_pid) == _ns(init)
        assert _ns(init)["mnt"] != os.readlink("/proc/self/ns/mnt")
        assert Path(f"/proc/{exec_pid}/cgroup").read_text() == Path(
            f"/proc/{init}/cgroup").read_text()
        assert _same_root(exec_pid, init)
        assert _lsm_label(exec_pid) == _lsm_label(init)  # no AppArmor/SELinux here: EINVAL
        # and the filter refuses the same calls in the exec'd process
        done = runtime.run("exec", container_id, "/probe", "syscalls")
        assert done.returncode == 0, done.stderr
        got = errnos(done.stdout)
        assert got == dict.fromkeys(got, errno.EPERM) and len(got) == 5, got
    finally:
        runtime.run("delete", "--force", container_id)


def test_exec_stopped_container_is_refused(
    runtime: Runtime, bundle_factory: Any, probe: Path, container_id: str
) -> None:
    config = default_config(["true"])
    bundle = with_probe(bundle_factory, probe, ["true"], config)
    done = runtime.run("run", "-d", "--bundle", str(bundle), container_id)
    assert done.returncode == 0, done.stderr
    wait_stopped(runtime, container_id)
    done = runtime.run("exec", container_id, "/probe", "ids")
    assert done.returncode != 0
    assert "uid=" not in done.stdout


def test_userns_without_own_netns_cannot_mount_sysfs(
    runtime: Runtime, busybox_rootfs: Path, probe: Path, open_dir: Path, container_id: str
) -> None:
    """sysfs belongs to the network namespace: only its owner may mount it. A
    user-namespaced container sharing the host's network fails clearly, in both."""
    config = userns_config(["true"])
    config["linux"]["namespaces"] = [
        ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"
    ]
    bundle = userns_bundle(open_dir, busybox_rootfs, probe, config)
    done = runtime.run("run", "--bundle", str(bundle), container_id)
    assert done.returncode != 0
    assert "/sys" in done.stderr
    assert "not permitted" in done.stderr
