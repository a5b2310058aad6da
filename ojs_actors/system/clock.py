"""One clock for timestamps and sleeps.

Job timestamps are wall-clock epoch milliseconds, but the actors sleep on
trio's clock. Deriving the former from the latter (wall time at start plus
trio's elapsed time) keeps the two consistent, and makes every time-dependent
path testable with ``trio.testing.MockClock(autojump_threshold=0)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

Clock = Callable[[], int]


def trio_wall_clock() -> Clock:
    """Must be called inside ``trio.run``."""
    offset_ms = time.time() * 1000 - trio.current_time() * 1000

    def now_ms() -> int:
        return int(offset_ms + trio.current_time() * 1000)

    return now_ms
