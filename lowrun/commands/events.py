from __future__ import annotations

import sys
import time
from types import SimpleNamespace

from lowrun import jsonio
from lowrun.commands import store_of
from lowrun.container.lifecycle import cgroup_of, stats, status_of
from lowrun.errors import UsageError
from lowrun.state import STOPPED


def _interval(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for suffix in ("ms", "s", "m"):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * units[suffix]
            except ValueError:
                break
    raise UsageError(f"--interval {text!r}: expected a duration like 5s or 500ms")


def main(args: SimpleNamespace) -> int:
    store = store_of(args)
    if args.stats:
        event = {"type": "stats", "id": args.container_id,
                 "data": stats(store, args.container_id)}
        sys.stdout.write(jsonio.dumps(event) + "\n")
        return 0
    interval = _interval(args.interval)
    state = store.load(args.container_id)
    cgroup = cgroup_of(state)
    ooms = cgroup.oom_kill_count()
    while status_of(store, state) != STOPPED:
        event = {"type": "stats", "id": args.container_id, "data": cgroup.stats()}
        sys.stdout.write(jsonio.dumps(event) + "\n")
        now = cgroup.oom_kill_count()
        if now > ooms:
            sys.stdout.write(jsonio.dumps({"type": "oom", "id": args.container_id}) + "\n")
            ooms = now
        sys.stdout.flush()
        time.sleep(interval)
    return 0
