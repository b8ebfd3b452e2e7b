"""Time `RUNTIME run` of /bin/true on one busybox bundle: lowrun against runc and crun.

Usage: .venv/bin/python bench/lowrun_run.py [--runs N]
Prints the median, p10 and p90 of each runtime and lowrun's ratio to each peer.
Runs are interleaved (lowrun, runc, crun, lowrun, ...) so that a noisy neighbour
hurts all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.bundle import base_config, make_bundle  # noqa: E402
from tests.support.rootfs import build_busybox_rootfs  # noqa: E402

RUNTIMES = {"lowrun": str(ROOT / ".venv" / "bin" / "lowrun"), "runc": "runc", "crun": "crun"}
# crun 1.8 refuses a hybrid cgroup host outright ("cgroups in hybrid mode not supported"),
# even with --cgroup-manager=disabled. So every runtime is measured twice: on the host as it
# is (crun left out), and in a private mount namespace where the stray cgroup2 mount is
# unmounted, so that the host looks like pure cgroup v1 to all three alike.
UNIFIED = "/sys/fs/cgroup/unified"


def available() -> dict[str, str]:
    found = {}
    for name, binary in RUNTIMES.items():
        path = binary if "/" in binary else shutil.which(binary)
        if path and Path(path).exists():
            found[name] = path
    return found


def time_run(binary: str, state_root: Path, bundle: Path) -> float:
    cid = "bench-" + uuid.uuid4().hex[:8]
    start = time.perf_counter()
    cmd = [binary, "--root", str(state_root), "run", "--bundle", str(bundle), cid]
    proc = subprocess.run(cmd,
                          stdin=subprocess.DEVNULL, capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{binary} run failed: {proc.stderr.decode()}")
    return elapsed


def measure(
    runtimes: dict[str, str], work: Path, bundle: Path, runs: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    for name, binary in runtimes.items():  # warm-up: page cache, .pyc files
        time_run(binary, work / f"{name}-root", bundle)
    for _ in range(runs):
        for name, binary in runtimes.items():
            times[name].append(time_run(binary, work / f"{name}-root", bundle))
    return times


def measure_pure_v1(runtimes: dict[str, str], work: Path, bundle: Path,
                    runs: int) -> dict[str, list[float]]:
    """measure() in a child whose mount namespace has no cgroup2 mount."""
    from lowrun import syscalls

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
        syscalls.umount2(UNIFIED, syscalls.MNT_DETACH)
        result = measure(runtimes, work, bundle, runs)
        with os.fdopen(write_end, "w") as f:
            json.dump(result, f)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        raise SystemExit("the pure-v1 measurement failed")
    result: dict[str, list[float]] = json.loads(data)
    return result


def report(title: str, times: dict[str, list[float]], runs: int) -> None:
    print(f"\n{title} ({runs} runs of /bin/true each, interleaved)")
    print(f"{'runtime':8} {'median ms':>10} {'p10':>8} {'p90':>8}")
    medians = {}
    for name, values in times.items():
        values.sort()
        medians[name] = statistics.median(values) * 1000
        p10 = values[len(values) // 10] * 1000
        p90 = values[(len(values) * 9) // 10] * 1000
        print(f"{name:8} {medians[name]:10.1f} {p10:8.1f} {p90:8.1f}")
    for peer in ("runc", "crun"):
        if peer in medians and "lowrun" in medians:
            print(f"lowrun / {peer}: {medians['lowrun'] / medians[peer]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    runtimes = available()
    hybrid = {k: v for k, v in runtimes.items() if k != "crun"}
    with tempfile.TemporaryDirectory(prefix="lowrun-bench-") as tmp:
        work = Path(tmp)
        template = build_busybox_rootfs(work / "template")
        bundle = make_bundle(work / "bundle", template, ["/bin/true"], base_config())
        report("host as it is (hybrid cgroups; crun refuses it)",
               measure(hybrid, work, bundle, args.runs), args.runs)
        if os.path.ismount(UNIFIED):
            report("private mount namespace without the cgroup2 mount (pure v1)",
                   measure_pure_v1(runtimes, work, bundle, args.runs), args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
