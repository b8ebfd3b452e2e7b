"""Capabilities, no_new_privs and seccomp on the real kernel, each in a forked child.

Every test forks, applies the primitive in the child only, and has the child report what
the kernel then lets it do through a pipe (as JSON, or as the output of a program it
execs). The parent always reaps the child, and kills it if it hangs.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lowrun import capabilities as caps
from lowrun import seccomp, syscalls
from lowrun.errors import SyscallError
from shim.seccomp_profile import DOCKER_DEFAULT_CAPABILITIES, default_seccomp_profile

pytestmark = pytest.mark.root

needs_seccomp = pytest.mark.skipif(not seccomp.available(), reason="libseccomp not available")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.personality.argtypes = [ctypes.c_ulong]

SYS_clone3 = 435
SYS_keyctl = 250
SYS_mseal = 462  # kernel 6.10, newer than every call docker's profile names
KEYCTL_GET_KEYRING_ID = 0
KEY_SPEC_SESSION_KEYRING = -3
NOBODY = 65534
CAT = shutil.which("cat") or "/bin/cat"


@dataclass
class Child:
    status: int
    output: bytes

    @property
    def exit_code(self) -> int | None:
        return os.waitstatus_to_exitcode(self.status) if os.WIFEXITED(self.status) else None

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    def report(self) -> Any:
        assert self.exit_code == 0, f"child failed ({self.status:#x}): {self.output!r}"
        return json.loads(self.output)

    def proc_status(self) -> dict[str, str]:
        assert self.exit_code == 0, f"child failed ({self.status:#x}): {self.output!r}"
        fields = {}
        for line in self.output.decode().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return fields


def in_child(body: Callable[[int], Any], timeout: float = 30) -> Child:
    """Run body(write_fd) in a forked child and collect what it writes.

    A body that returns a value has it written as JSON; one that execs writes by itself.
    Exceptions become a non-zero exit with the error text as output.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(r)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            result = body(w)
            os.write(w, json.dumps(result).encode())
        except BaseException as e:
            code = 1
            with contextlib.suppress(OSError):
                os.write(w, f"{type(e).__name__}: {e}".encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("child timed out")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    return Child(status, b"".join(chunks))


def exec_cat_status(w: int) -> None:
    """Exec a plain (non-setuid, no file caps) program that prints /proc/self/status."""
    os.dup2(w, 1)
    os.execv(CAT, [CAT, "/proc/self/status"])


def errno_of(call: Callable[[], Any]) -> int:
    try:
        call()
    except OSError as e:
        return e.errno or -1
    return 0


def libc_errno(result: int) -> int:
    return ctypes.get_errno() if result == -1 else 0


def only(*names: str) -> caps.CapabilitySets:
    """The same names in bounding, effective, permitted (like runc's default spec)."""
    listed = list(names)
    return caps.parse({"bounding": listed, "effective": listed, "permitted": listed})


def _status_field(key: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(key)


# --- capabilities ---


def test_dropping_bounding_caps_shows_in_capbnd() -> None:
    sets = only("CAP_KILL", "CAP_CHOWN")

    def body(w: int) -> Any:
        caps.drop_bounding(sets)
        return _status_field("CapBnd")

    assert int(in_child(body).report(), 16) == 0x21
    assert int(_status_field("CapBnd"), 16) != 0x21  # the parent kept its own


def test_child_with_only_cap_kill_cannot_chown(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")

    def attempt(sets: caps.CapabilitySets) -> Callable[[int], Any]:
        def body(w: int) -> Any:
            caps.drop_bounding(sets)
            caps.apply(sets)
            return {
                "errno": errno_of(lambda: os.chown(target, 1234, 1234)),
                "eff": caps.current().names("effective"),
            }

        return body

    denied = in_child(attempt(only("CAP_KILL"))).report()
    assert denied == {"errno": errno.EPERM, "eff": ["CAP_KILL"]}
    assert target.stat().st_uid == 0
    allowed = in_child(attempt(only("CAP_KILL", "CAP_CHOWN"))).report()
    assert allowed["errno"] == 0
    assert target.stat().st_uid == 1234


def test_apply_sets_exactly_what_the_kernel_reports() -> None:
    sets = caps.parse(
        {
            "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SETPCAP"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
        }
    )

    def body(w: int) -> Any:
        caps.drop_bounding(sets)
        caps.apply(sets)
        now = caps.current()
        return {s: now.names(s) for s in caps.SET_NAMES}

    got = in_child(body).report()
    assert got == {s: sets.names(s) for s in caps.SET_NAMES}


def _become_nobody(sets: caps.CapabilitySets) -> None:
    caps.drop_bounding(sets)
    caps.keep_for_setuid()
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    caps.apply(sets)


def test_ambient_caps_survive_exec_of_a_non_root_program() -> None:
    listed = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
    with_ambient = caps.parse(
        {s: listed for s in ("bounding", "effective", "permitted", "inheritable")}
        | {"ambient": ["CAP_NET_BIND_SERVICE"]}
    )
    without = caps.parse({s: listed for s in ("bounding", "effective", "permitted")})

    def run(sets: caps.CapabilitySets) -> dict[str, str]:
        def body(w: int) -> None:
            _become_nobody(sets)
            exec_cat_status(w)

        return in_child(body).proc_status()

    kept = run(with_ambient)
    assert kept["Uid"].split()[0] == str(NOBODY)
    assert int(kept["CapAmb"], 16) == 1 << 10
    assert int(kept["CapEff"], 16) == 1 << 10
    assert int(kept["CapPrm"], 16) == 1 << 10
    assert int(kept["CapBnd"], 16) == 1 << 10 | 1 << 5
    lost = run(without)  # a non-root exec without ambient caps ends with none
    assert lost["Uid"].split()[0] == str(NOBODY)
    assert int(lost["CapEff"], 16) == 0
    assert int(lost["CapPrm"], 16) == 0


def test_for_root_the_bounding_set_decides_after_exec() -> None:
    # Documented in docs/security.md: uid 0 execs with permitted = inheritable | bounding.
    sets = caps.parse(
        {
            "bounding": ["CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL"],
        }
    )

    def body(w: int) -> None:
        caps.drop_bounding(sets)
        caps.apply(sets)
        exec_cat_status(w)

    status = in_child(body).proc_status()
    assert int(status["CapEff"], 16) == 0x21
    assert int(status["CapPrm"], 16) == 0x21


def test_keepcaps_is_what_keeps_permitted_across_setuid() -> None:
    sets = only("CAP_KILL", "CAP_SETPCAP")

    def body(w: int) -> Any:
        caps.drop_bounding(sets)
        os.setresuid(NOBODY, NOBODY, NOBODY)  # without keep_for_setuid
        try:
            caps.apply(sets)
        except SyscallError as e:
            return {"errno": e.errno}
        return {"errno": 0}

    assert in_child(body).report() == {"errno": errno.EPERM}


# --- no_new_privs ---


def test_no_new_privs_stays_set_after_exec() -> None:
    def body(w: int) -> None:
        syscalls.set_no_new_privs()
        exec_cat_status(w)

    def plain(w: int) -> None:
        exec_cat_status(w)

    assert in_child(body).proc_status()["NoNewPrivs"] == "1"
    assert in_child(plain).proc_status()["NoNewPrivs"] == "0"


# --- seccomp ---


def _errno_rule(names: list[str], errno_ret: int, **extra: Any) -> dict[str, Any]:
    return {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno_ret, **extra}


@needs_seccomp
def test_seccomp_errno_for_mkdir_while_other_calls_work(tmp_path: Path) -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [_errno_rule(["mkdir", "mkdirat", "no_such_syscall_xyz"], errno.ENOMEDIUM)],
    }

    def body(w: int) -> Any:
        f = seccomp.compile(spec)
        syscalls.set_no_new_privs()
        f.load()
        (tmp_path / "written").write_text("ok")
        return {
            "mkdir": errno_of(lambda: os.mkdir(tmp_path / "d")),
            "rmdir": errno_of(lambda: os.rmdir(tmp_path / "missing")),
            "read": (tmp_path / "written").read_text(),
            "pid": os.getpid() > 1,
            "skipped": list(f.skipped),
            "mode": _status_field("Seccomp"),
        }

    got = in_child(body).report()
    assert got == {
        "mkdir": errno.ENOMEDIUM,
        "rmdir": errno.ENOENT,
        "read": "ok",
        "pid": True,
        "skipped": ["no_such_syscall_xyz"],
        "mode": "2",
    }
    assert not (tmp_path / "d").exists()
    os.mkdir(tmp_path / "d")  # the parent has no filter


@needs_seccomp
def test_argument_condition_personality_only_with_zero() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            _errno_rule(
                ["personality"], errno.EPERM, args=[{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}]
            )
        ],
    }

    def body(w: int) -> Any:
        f = seccomp.compile(spec)
        syscalls.set_no_new_privs()
        f.load()
        zero = _libc.personality(0)
        zero_errno = libc_errno(zero)
        query = _libc.personality(0xFFFFFFFF)
        return {
            "zero": zero_errno,
            "query": libc_errno(query),
            "linux32": libc_errno(_libc.personality(0x0008)),
        }

    assert in_child(body).report() == {"zero": 0, "query": errno.EPERM, "linux32": errno.EPERM}


@needs_seccomp
def test_masked_eq_condition() -> None:
    # Refuse unshare(2) without namespace flags; calls with a namespace flag pass.
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            _errno_rule(
                ["unshare"],
                errno.EACCES,
                args=[{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            )
        ],
    }

    # MASKED_EQ matches when (arg & value) == valueTwo: here, when no namespace flag is set.
    def body(w: int) -> Any:
        f = seccomp.compile(spec)
        syscalls.set_no_new_privs()
        f.load()
        return {
            "none": errno_of(lambda: syscalls.unshare(0)),
            "uts": errno_of(lambda: syscalls.unshare(syscalls.CLONE_NEWUTS)),
        }

    got = in_child(body).report()
    assert got["none"] == errno.EACCES  # flag-free call matched the rule
    assert got["uts"] == 0  # CLONE_NEWUTS set: (flags & mask) != 0, allowed (we are root)


@needs_seccomp
def test_kill_process_action_kills_with_sigsys() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}],
    }

    def body(w: int) -> Any:
        f = seccomp.compile(spec)
        syscalls.set_no_new_privs()
        f.load()
        os.write(w, b"loaded")
        os.uname()
        return "survived"

    child = in_child(body)
    assert child.signal == signal.SIGSYS
    assert child.output == b"loaded"


@needs_seccomp
def test_filter_loads_without_cap_sys_admin_only_with_no_new_privs(tmp_path: Path) -> None:
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [_errno_rule(["mkdir"], errno.EROFS)]}
    none = caps.CapabilitySets()

    def attempt(nnp: bool) -> Callable[[int], Any]:
        def body(w: int) -> Any:
            f = seccomp.compile(spec)
            if nnp:
                syscalls.set_no_new_privs()
            caps.apply(none)  # no capability left, CAP_SYS_ADMIN included
            try:
                f.load()
            except SyscallError as e:
                return {"load": e.errno}
            return {"load": 0, "mkdir": errno_of(lambda: os.mkdir(tmp_path / "d"))}

        return body

    assert in_child(attempt(nnp=True)).report() == {"load": 0, "mkdir": errno.EROFS}
    assert in_child(attempt(nnp=False)).report() == {"load": errno.EACCES}


@needs_seccomp
def test_libseccomp_does_not_set_no_new_privs_by_itself() -> None:
    def body(w: int) -> Any:
        seccomp.compile(
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [_errno_rule(["mkdir"], 1)]}
        ).load()  # as root
        return {"nnp": syscalls.get_no_new_privs(), "mode": _status_field("Seccomp")}

    assert in_child(body).report() == {"nnp": False, "mode": "2"}


@needs_seccomp
def test_filter_and_nnp_survive_exec() -> None:
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [_errno_rule(["mkdir"], 1)]}

    def body(w: int) -> None:
        f = seccomp.compile(spec)
        syscalls.set_no_new_privs()
        f.load()
        exec_cat_status(w)

    status = in_child(body).proc_status()
    assert status["Seccomp"] == "2"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp_filters"] == "1"


@needs_seccomp
def test_all_filter_flags_load() -> None:
    spec = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": list(seccomp.FLAGS),
        "syscalls": [_errno_rule(["mkdir"], errno.EDQUOT)],
    }

    def body(w: int) -> Any:
        f = seccomp.compile(spec)
        syscalls.set_no_new_privs()
        f.load()
        return errno_of(lambda: os.mkdir("/nonexistent-dir-for-seccomp-test"))

    assert in_child(body).report() == errno.EDQUOT


@needs_seccomp
def test_docker_default_profile_blocks_what_docker_blocks(tmp_path: Path) -> None:
    profile = default_seccomp_profile(DOCKER_DEFAULT_CAPABILITIES)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()

    def body(w: int) -> Any:
        f = seccomp.compile(profile)
        syscalls.set_no_new_privs()
        f.load()
        # The child is still root with every capability: only seccomp says no.
        clone3 = libc_errno(_libc.syscall(SYS_clone3, None, 0))
        mseal = libc_errno(_libc.syscall(SYS_mseal, 0, 0, 0))
        keyctl = libc_errno(
            _libc.syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
        )
        pid = os.fork()  # clone without namespace flags is allowed
        if pid == 0:
            os._exit(7)
        _, status = os.waitpid(pid, 0)
        return {
            "mount": errno_of(lambda: syscalls.mount("tmpfs", str(mountpoint), "tmpfs")),
            "unshare_user": errno_of(lambda: syscalls.unshare(syscalls.CLONE_NEWUSER)),
            "unshare_net": errno_of(lambda: syscalls.unshare(syscalls.CLONE_NEWNET)),
            "sethostname": errno_of(lambda: syscalls.sethostname("evil")),
            "keyctl": keyctl,
            "clone3": clone3,
            "mseal": mseal,
            "personality0": libc_errno(_libc.personality(0)),
            "personality_rie": libc_errno(_libc.personality(0x0400000)),
            "fork": os.waitstatus_to_exitcode(status),
            "mkdir": errno_of(lambda: os.mkdir(tmp_path / "ok")),
        }

    got = in_child(body).report()
    assert got == {
        "mount": errno.EPERM,
        "unshare_user": errno.EPERM,
        "unshare_net": errno.EPERM,
        "sethostname": errno.EPERM,
        "keyctl": errno.EPERM,
        "clone3": errno.ENOSYS,
        "mseal": errno.ENOSYS,  # lowrun's ENOSYS prologue, as runc: not the default EPERM
        "personality0": 0,
        "personality_rie": errno.EPERM,
        "fork": 7,
        "mkdir": 0,
    }
    assert not os.path.ismount(mountpoint)


@needs_seccomp
def test_docker_profile_with_sys_admin_allows_mount(tmp_path: Path) -> None:
    profile = default_seccomp_profile([*DOCKER_DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])

    def body(w: int) -> Any:
        f = seccomp.compile(profile)
        syscalls.set_no_new_privs()
        f.load()
        syscalls.unshare(syscalls.CLONE_NEWNS)  # private mount namespace: nothing leaks
        syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        target = tmp_path / "mnt"
        target.mkdir()
        syscalls.mount("tmpfs", str(target), "tmpfs")
        return os.path.ismount(target)

    assert in_child(body).report() is True
    assert not os.path.ismount(tmp_path / "mnt")


# --- the generated profile under the real peer (runc) ---

PROBE = (
    "mount -t tmpfs none /tmp; echo mount=$?; "
    "hostname evil; echo hostname=$?; "
    "unshare -U true; echo unshare=$?; "
    "mkdir /tmp/d; echo mkdir=$?"
)


def _run_under_runc(bundle_factory: Any, tmp_path: Path, profile_caps: list[str]) -> str:
    from tests.support.bundle import base_config
    from tests.support.runtime import Runtime, binary_for

    binary = binary_for("runc")
    if binary is None:
        pytest.skip("runc is not installed")
    config = base_config()
    held = [*DOCKER_DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"]  # the caps allow; seccomp decides
    config["process"]["capabilities"] = {s: held for s in ("bounding", "effective", "permitted")}
    config["root"]["readonly"] = False
    config["linux"]["seccomp"] = default_seccomp_profile(profile_caps)
    bundle = bundle_factory(["sh", "-c", PROBE], config)
    rt = Runtime(name="runc", binary=binary, root=tmp_path / "runc-root")
    name = "sec-" + os.urandom(6).hex()
    try:
        done = rt.run("run", "--bundle", str(bundle), name, timeout=60)
    finally:
        rt.cleanup()
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_docker_profile_under_runc_blocks_mount_without_sys_admin(
    bundle_factory: Any, tmp_path: Path
) -> None:
    out = _run_under_runc(bundle_factory, tmp_path, list(DOCKER_DEFAULT_CAPABILITIES))
    assert "mount=0" not in out
    assert "hostname=0" not in out
    assert "unshare=0" not in out
    assert "mkdir=0" in out


def test_docker_profile_under_runc_allows_mount_with_sys_admin(
    bundle_factory: Any, tmp_path: Path
) -> None:
    out = _run_under_runc(bundle_factory, tmp_path, [*DOCKER_DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])
    assert "mount=0" in out
    assert "hostname=0" in out
    assert "mkdir=0" in out


# --- the same verdicts as runc, call by call ---

SYSPROBE_C = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
/* Each argument is "nr[:a0[:a1...]]"; prints "arg=errno" (0 when the call succeeded). */
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long a[6] = {0};
        char *s = strdup(argv[i]);
        char *tok = strtok(s, ":");
        long nr = strtol(tok, NULL, 0);
        for (int j = 0; j < 6 && (tok = strtok(NULL, ":")); j++) a[j] = strtol(tok, NULL, 0);
        errno = 0;
        long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        printf("%s=%d\n", argv[i], r == -1 ? errno : 0);
        free(s);
    }
    return 0;
}
"""

# x86_64 calls with arguments that make an allowed call fail harmlessly (or succeed).
PROBES = {
    "39": 0,  # getpid
    "83:0:0": errno.EFAULT,  # mkdir(NULL): allowed
    "101:2:0:0:0": errno.ESRCH,  # ptrace(PEEKDATA, pid 0): allowed on kernels >= 4.8
    "135:0xffffffff": 0,  # personality query
    "135:0x400000": errno.EPERM,  # READ_IMPLIES_EXEC
    "41:40:1:0": errno.EPERM,  # socket(AF_VSOCK)
    "165:0:0:0:0:0": errno.EPERM,  # mount
    "169:0:0:0:0": errno.EPERM,  # reboot
    "173:0:0:0": errno.EPERM,  # ioperm
    "180": errno.EPERM,  # nfsservctl: known to the profile's era, denied by default
    "250:0:-3": errno.EPERM,  # keyctl
    "272:0x10000000": errno.EPERM,  # unshare(CLONE_NEWUSER)
    "321:-1:0:0": errno.EPERM,  # bpf
    "435:0:0": errno.ENOSYS,  # clone3
    "458:0:0:0:0": errno.ENOSYS,  # listmount: newer than the profile
    "462:0:0:0": errno.ENOSYS,  # mseal: newer than the profile
    "1000": errno.ENOSYS,  # no such call
}


@pytest.fixture(scope="module")
def sysprobe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    work = tmp_path_factory.mktemp("sysprobe")
    (work / "sysprobe.c").write_text(SYSPROBE_C)
    out = work / "sysprobe"
    done = subprocess.run(
        [gcc, "-static", "-O2", "-o", str(out), str(work / "sysprobe.c")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot build a static probe: {done.stderr[-300:]}")
    return out


def _parse_probe(out: str) -> dict[str, int]:
    result = {}
    for line in out.splitlines():
        key, _, value = line.rpartition("=")
        result[key] = int(value)
    return result


@needs_seccomp
def test_docker_profile_same_verdicts_as_runc(
    sysprobe: Path, bundle_factory: Any, tmp_path: Path
) -> None:
    from tests.support.bundle import base_config
    from tests.support.runtime import Runtime, binary_for

    profile = default_seccomp_profile(DOCKER_DEFAULT_CAPABILITIES)
    held = list(DOCKER_DEFAULT_CAPABILITIES)

    def body(w: int) -> None:
        sets = caps.parse({s: held for s in ("bounding", "effective", "permitted")})
        f = seccomp.compile(profile)
        syscalls.set_no_new_privs()
        caps.drop_bounding(sets)
        caps.apply(sets)
        f.load()
        os.dup2(w, 1)
        os.execv(str(sysprobe), [str(sysprobe), *PROBES])

    ours = _parse_probe(in_child(body).output.decode())
    assert ours == PROBES

    binary = binary_for("runc")
    if binary is None:
        pytest.skip("runc is not installed")
    config = base_config()
    config["process"]["capabilities"] = {s: held for s in ("bounding", "effective", "permitted")}
    config["linux"]["seccomp"] = profile
    bundle = bundle_factory(["/sysprobe", *PROBES], config)
    rootfs = bundle / "rootfs"
    shutil.copy2(sysprobe, rootfs / "sysprobe")
    rt = Runtime(name="runc", binary=binary, root=tmp_path / "runc-root")
    try:
        done = rt.run("run", "--bundle", str(bundle), "probe-" + os.urandom(6).hex(), timeout=60)
    finally:
        rt.cleanup()
    assert done.returncode == 0, done.stderr
    assert _parse_probe(done.stdout) == ours


# --- end to end: the same specs through lowrun and runc (the `runtime` fixture) ---


def _container(runtime: Any, bundle_factory: Any, args: list[str], config: dict[str, Any]) -> str:
    bundle = bundle_factory(args, config)
    cid = "sec-" + os.urandom(6).hex()
    done = runtime.run("run", "--bundle", str(bundle), cid, timeout=60)
    assert done.returncode == 0, f"{runtime.name}: {done.stderr}"
    return str(done.stdout)


@needs_seccomp
def test_container_docker_profile_verdicts(
    runtime: Any, bundle_factory: Any, sysprobe: Path
) -> None:
    from tests.support.bundle import base_config

    held = list(DOCKER_DEFAULT_CAPABILITIES)
    config = base_config()
    config["process"]["capabilities"] = {s: held for s in ("bounding", "effective", "permitted")}
    config["linux"]["seccomp"] = default_seccomp_profile(held)
    config["root"]["readonly"] = False

    def with_probe(args: list[str], cfg: dict[str, Any] | None = None) -> Path:
        bundle = bundle_factory(args, cfg)
        shutil.copy2(sysprobe, bundle / "rootfs" / "sysprobe")
        return Path(bundle)

    out = _container(runtime, with_probe, ["/sysprobe", *PROBES], config)
    assert _parse_probe(out) == PROBES


def test_container_with_only_cap_kill_cannot_chown(runtime: Any, bundle_factory: Any) -> None:
    from tests.support.bundle import base_config

    config = base_config()
    config["root"]["readonly"] = False
    script = "touch /tmp/f; chown 1234 /tmp/f; echo chown=$?; grep CapEff /proc/self/status"
    config["process"]["capabilities"] = {
        s: ["CAP_KILL"] for s in ("bounding", "effective", "permitted")
    }
    out = _container(runtime, bundle_factory, ["sh", "-c", script], config)
    assert "chown=1" in out
    assert "0000000000000020" in out  # CAP_KILL only
    config["process"]["capabilities"] = {
        s: ["CAP_KILL", "CAP_CHOWN"] for s in ("bounding", "effective", "permitted")
    }
    assert "chown=0" in _container(runtime, bundle_factory, ["sh", "-c", script], config)


def test_container_ambient_caps_for_a_non_root_user(runtime: Any, bundle_factory: Any) -> None:
    from tests.support.bundle import base_config

    config = base_config()
    wanted = ["CAP_NET_BIND_SERVICE"]
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    config["process"]["capabilities"] = {
        "bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
        "effective": wanted,
        "permitted": wanted,
        "inheritable": wanted,
        "ambient": wanted,
    }
    out = _container(runtime, bundle_factory, ["grep", "^Cap", "/proc/self/status"], config)
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert int(fields["CapAmb"], 16) == 1 << 10
    assert int(fields["CapEff"], 16) == 1 << 10
    assert int(fields["CapBnd"], 16) == 1 << 10 | 1 << 5
