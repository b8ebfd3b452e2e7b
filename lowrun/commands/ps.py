from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

from lowrun import jsonio
from lowrun.commands import store_of
from lowrun.container.lifecycle import cgroup_of, status_of
from lowrun.errors import InvalidState, LowrunError
from lowrun.state import STOPPED


def main(args: SimpleNamespace) -> int:
    store = store_of(args)
    state = store.load(args.container_id)
    if status_of(store, state) == STOPPED:
        raise InvalidState("container not running")
    pids = sorted(cgroup_of(state).pids())
    if args.format == "json":
        sys.stdout.write(jsonio.dumps(pids) + "\n")
        return 0
    ps_args = [a for a in args.ps_args if a != "--"] or ["-ef"]
    try:
        out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LowrunError(f"ps {' '.join(ps_args)}: {exc}") from None
    lines = out.splitlines()
    header = lines[0].split()
    if "PID" not in header:
        raise LowrunError("ps output has no PID column")
    column = header.index("PID")
    sys.stdout.write(lines[0] + "\n")
    wanted = set(pids)
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in wanted:
            sys.stdout.write(line + "\n")
    return 0
