"""Named crash points: fault injection for the tests of a backend's crash windows.

A backend calls :func:`crash_point` between two stores (or between a store and the reply
that tells about it). Normally that does nothing. A test starts a server process with

    OJS_CRASH_AT=<point>      the name of one crash point
    OJS_CRASH_AFTER=<n>       pass it n times first (default 0: die the first time)

and the process kills itself with SIGKILL at that point, so no shutdown code runs: what
was stored stays, what was not is lost, exactly as when the machine fails there.
"""

from __future__ import annotations

import os
import signal

_point = os.environ.get("OJS_CRASH_AT") or None
_passes_left = int(os.environ.get("OJS_CRASH_AFTER", "0") or 0)


def crash_point(name: str) -> None:
    """Die here if this is the armed crash point and its passes are used up."""
    global _passes_left
    if _point is None or name != _point:
        return
    if _passes_left > 0:
        _passes_left -= 1
        return
    os.kill(os.getpid(), signal.SIGKILL)


def armed() -> str | None:
    """The crash point armed in this process, if any."""
    return _point
