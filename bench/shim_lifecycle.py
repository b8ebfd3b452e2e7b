"""shimd against containerd: create+start+wait+delete of /bin/true, and one monitor's memory.

    sudo .venv/bin/python bench/shim_lifecycle.py [--runs 30] [--runtime runc]

Both daemons run in temporary roots with the same busybox rootfs directory and the
same OCI runtime. Rows:
- berth, Python client: Containers.Create, Tasks.Create/Start/Wait/Delete,
  Containers.Delete through shim.client (one process, warm channel);
- berth, `shimctl run --rm`: the same through the command line (a Python start per run);
- containerd, `ctr run --rm --rootfs`: the peer command line (when containerd is installed).
Memory: VmRSS, RssAnon and Pss of one monitor (shim-monitor) and of one
containerd-shim-runc-v2, each holding a `sleep` container.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shim.client import Client, Mount  # noqa: E402
from shim.runtime import resolve  # noqa: E402
from tests.support.rootfs import build_busybox_rootfs  # noqa: E402


def memory(pid: int) -> dict[str, int]:
    """VmRSS and RssAnon (kB) from status; Pss and USS (private pages, what one more
    container costs) from smaps_rollup."""
    out: dict[str, int] = {"USS": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            out[key] = int(value.split()[0])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "Pss":
            out["Pss"] = int(value.split()[0])
        elif key in ("Private_Clean", "Private_Dirty"):
            out["USS"] += int(value.split()[0])
    return out


def timed(runs: int, once: Callable[[int], None]) -> list[float]:
    once(-1)  # warm up
    times = []
    for i in range(runs):
        t = time.perf_counter()
        once(i)
        times.append(time.perf_counter() - t)
    return times


def summary(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p90 = ms[int(len(ms) * 0.9) - 1] if len(ms) >= 10 else ms[-1]
    return f"{statistics.median(ms):.0f} | {p90:.0f} | {statistics.mean(ms):.0f}"


def find_pid(needle: str) -> int:
    """The process with `needle` in its command line or its working directory."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if needle.encode() in cmd or cwd.endswith(needle):
                return int(entry)
    raise RuntimeError(f"no process with {needle!r} in its command line or cwd")


def bench_shimd(work: Path, rootfs: Path, runtime: str, runs: int, zygote: bool) -> list[str]:
    address = work / "shim.sock"
    how = "forked by the zygote" if zygote else "exec'd, --no-zygote"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "shim.daemon", "--root", str(work / "root"), "--state",
         str(work / "state"), "--address", str(address), "--runtime", runtime,
         *([] if zygote else ["--no-zygote"])],
        cwd=ROOT, stderr=subprocess.DEVNULL,
    )
    rows = []
    try:
        while not address.exists():
            time.sleep(0.05)
        client = Client(str(address))
        client.wait_ready()

        def lifecycle(i: int) -> None:
            cid = f"b{i + 1}"
            client.create_container(cid, {"process": {"args": ["/bin/true"]}})
            client.create_task(cid, rootfs=[Mount("bind", str(rootfs))])
            client.start(cid)
            assert client.wait(cid).exit_status == 0
            client.delete_task(cid)
            client.delete_container(cid)

        rows.append(f"| berth: shim.client, create+start+wait+delete ({runtime}, {how}) | "
                    f"{summary(timed(runs, lifecycle))} |")

        def shimctl(i: int) -> None:
            subprocess.run([sys.executable, "-m", "shim.ctl.main", "--address", str(address),
                            "run", "--rm", "--rootfs", str(rootfs), f"r{i + 1}", "/bin/true"],
                           cwd=ROOT, check=True)

        rows.append(f"| berth: `shimctl run --rm` ({runtime}, {how}) | "
                    f"{summary(timed(max(5, runs // 3), shimctl))} |")

        for n in range(10):  # ten, so that shared pages are shared as in real use
            client.create_container(f"mem{n}", {"process": {"args": ["sleep", "1000"]}})
            client.create_task(f"mem{n}", rootfs=[Mount("bind", str(rootfs))])
            client.start(f"mem{n}")
        time.sleep(1)
        mon = memory(find_pid("tasks/default/mem9"))
        rows.append(f"MEM | berth monitor ({how}) | {mon['VmRSS']} | {mon['RssAnon']} | "
                    f"{mon['Pss']} | {mon['USS']} |")
        for n in range(10):
            client.delete_task(f"mem{n}", force=True)
            client.delete_container(f"mem{n}")
        client.close()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)
    return rows


def bench_containerd(work: Path, rootfs: Path, runtime: str, runs: int) -> list[str]:
    """`ctr run --rm` on a private containerd (tests/compat/containerd_support.py, which
    also removes everything it made), and the memory of one containerd-shim-runc-v2."""
    from tests.compat.containerd_support import ContainerdError, containerd_daemon

    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        return ["| containerd: `ctr run --rm` | not installed | | |"]
    rows = []
    try:
        with containerd_daemon(work) as daemon:
            flags = daemon.runtime_flags(resolve(runtime))

            def ctr_run(i: int) -> None:
                daemon.run("run", "--rm", *flags, "--rootfs", str(rootfs), f"c{i + 1}",
                           "/bin/true", check=True)

            rows.append(f"| containerd 1.6: `ctr run --rm --rootfs` ({runtime}) | "
                        f"{summary(timed(max(5, runs // 3), ctr_run))} |")
            for n in range(10):
                daemon.run("run", "-d", *flags, "--rootfs", str(rootfs), f"mem{n}",
                           "/bin/sleep", "1000", check=True)
            time.sleep(1)
            shim = memory(find_pid(f"containerd-shim-runc-v2\x00-namespace\x00{daemon.namespace}"
                                   "\x00-id\x00mem9"))
            rows.append(f"MEM | containerd-shim-runc-v2 (Go) | {shim['VmRSS']} | "
                        f"{shim['RssAnon']} | {shim['Pss']} | {shim['USS']} |")
    except ContainerdError as exc:
        rows.append(f"| containerd 1.6: `ctr run --rm --rootfs` ({runtime}) | failed: "
                    f"{str(exc)[:120]} | | |")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--runtime", default="runc")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shimb-", dir="/tmp"))
    try:
        rootfs = build_busybox_rootfs(work / "rootfs")
        rows = bench_shimd(work / "s", rootfs, args.runtime, args.runs, zygote=True)
        rows += bench_shimd(work / "x", rootfs, args.runtime, args.runs, zygote=False)
        rows += bench_containerd(work / "c", rootfs, args.runtime, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| what | median ms | p90 ms | mean ms |\n|---|---|---|---|")
    print("\n".join(r for r in rows if not r.startswith("MEM")))
    print("\n| the 10th of 10 processes holding a `sleep` container | VmRSS kB | RssAnon kB "
          "| Pss kB | USS kB |")
    print("|---|---|---|---|---|")
    print("\n".join(r[4:] for r in rows if r.startswith("MEM")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
