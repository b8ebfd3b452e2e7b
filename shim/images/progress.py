"""Per-layer progress events, from the library to whoever shows them.

berthd turns them into docker's JSON progress messages, shimctl into progress bars.
A callback must be cheap and thread-safe: parallel downloads call it from their threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    RESOLVING = "resolving"
    WAITING = "waiting"
    EXISTS = "already exists"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    DOWNLOADED = "download complete"
    EXTRACTING = "extracting"
    EXTRACTED = "pull complete"
    PUSHING = "pushing"
    MOUNTED = "mounted from"
    PUSHED = "pushed"
    DONE = "done"


@dataclass(frozen=True)
class ProgressEvent:
    status: Status
    digest: str = ""
    """The blob (layer, config, manifest) the event is about; empty for the whole image."""
    current: int = 0
    total: int = 0
    kind: str = "layer"
    """"layer", "config", "manifest", "index" or "image"."""
    detail: str = ""


ProgressFn = Callable[[ProgressEvent], None]


def no_progress(_: ProgressEvent) -> None:
    """The default callback: nobody is watching."""
