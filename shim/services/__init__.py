"""The gRPC services of shimd, as a small registry with explicit dependencies.

Each module named in SERVICE_MODULES exposes `register(server, ctx)`: it builds its
local implementation (which in-process callers may use directly), adds its servicer
to the gRPC server, and may publish shared objects in `ctx.shared` for services
registered after it (for example "events", "content", "snapshots").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SERVICE_MODULES: list[str] = [
    # filled in as services land, in dependency order
    "shim.services.events",
    "shim.services.containers",
    "shim.services.tasks",
    "shim.services.version",
    "shim.services.content",
    "shim.services.snapshots",
    "shim.services.images",
]


@dataclass
class ServiceContext:
    root: Path
    """Persistent state (default /var/lib/berth-shim): content, snapshots, metadata."""
    state: Path
    """Runtime state on tmpfs (default /run/berth-shim): tasks/NS/ID bundles, sockets."""
    runtime: str = "lowrun"
    """The default OCI runtime binary (name on PATH or absolute path)."""
    shared: dict[str, object] = field(default_factory=dict)
