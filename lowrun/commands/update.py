from __future__ import annotations

import sys
from types import SimpleNamespace

from lowrun import jsonio
from lowrun.commands import store_of
from lowrun.container.lifecycle import update
from lowrun.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_FLAGS: dict[str, tuple[str, str, type]] = {
    "memory": ("memory", "limit", int),
    "memory_swap": ("memory", "swap", int),
    "memory_reservation": ("memory", "reservation", int),
    "kernel_memory": ("memory", "kernel", int),
    "cpu_shares": ("cpu", "shares", int),
    "cpu_quota": ("cpu", "quota", int),
    "cpu_period": ("cpu", "period", int),
    "cpu_rt_period": ("cpu", "realtimePeriod", int),
    "cpu_rt_runtime": ("cpu", "realtimeRuntime", int),
    "cpuset_cpus": ("cpu", "cpus", str),
    "cpuset_mems": ("cpu", "mems", str),
    "pids_limit": ("pids", "limit", int),
    "blkio_weight": ("blockIO", "weight", int),
}


def _from_flags(args: SimpleNamespace) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for attr, (group, key, kind) in _FLAGS.items():
        value = getattr(args, attr)
        if value is None:
            continue
        try:
            resources.setdefault(group, {})[key] = kind(value)
        except ValueError:
            flag = "--" + attr.replace("_", "-")
            raise UsageError(f"{flag} {value!r}: expected {kind.__name__}") from None
    return resources


def _from_file(path: str) -> dict[str, Any]:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path) as f:
                text = f.read()
        data = jsonio.loads(text)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--resources {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--resources {path}: expected a JSON object")
    return data


def main(args: SimpleNamespace) -> int:
    resources = _from_file(args.resources) if args.resources else {}
    for group, values in _from_flags(args).items():
        resources.setdefault(group, {}).update(values)
    if not resources:
        raise UsageError("update: nothing to change (give --resources or a limit flag)")
    update(store_of(args), args.container_id, resources)
    return 0
