"""Signal numbers and names from the C module `_signal`, without `signal`'s enums.

`import signal` builds the Signals/Handlers enums (and imports enum): ~2.5 ms of every
lowrun start, for a few constants.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    Handler = Callable[[int, FrameType | None], object] | int | None

NSIG: int = _signal.NSIG
SIGKILL: int = _signal.SIGKILL
SIGTERM: int = _signal.SIGTERM

NUMBERS: dict[str, int] = {
    name: getattr(_signal, name)
    for name in dir(_signal)
    if name.startswith("SIG") and not name.startswith("SIG_") and name not in ("SIGRTMIN",
                                                                                 "SIGRTMAX")
}
"""SIGKILL -> 9, ... as the kernel numbers them on this architecture."""

FORWARDED: tuple[int, ...] = tuple(
    NUMBERS[n] for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
                         "SIGWINCH")
)


def handle(sig: int, handler: Handler) -> Handler:
    """signal.signal(): install `handler`, return the previous one."""
    previous: Handler = _signal.signal(sig, handler)
    return previous
