"""Version: which shimd answers, and which API it speaks."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc

from shim.api.v1 import version_pb2, version_pb2_grpc
from shim.services import ServiceContext

API = "berth.shim.v1"


@cache
def version() -> tuple[str, str]:
    """(release, git revision) of this tree; the revision is empty outside a checkout."""
    try:
        release = metadata.version("berth")
    except metadata.PackageNotFoundError:
        release = "0.0.0"
    try:
        revision = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parents[2]), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        revision = ""
    return release, revision


class VersionServicer(version_pb2_grpc.VersionServicer):  # type: ignore[misc]
    def Version(self, request: Any, context: grpc.ServicerContext) -> Any:
        release, revision = version()
        return version_pb2.VersionResponse(version=release, revision=revision, api=API)


def register(server: grpc.Server, ctx: ServiceContext) -> None:
    version()
    version_pb2_grpc.add_VersionServicer_to_server(VersionServicer(), server)
