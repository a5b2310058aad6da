"""Jobs finished per minute, from the stored counts as the admin statistics read them.

The counts are the backend's (every process sharing it), so the rates are the
deployment's, not this process's; they are measured between reads: the first read
reports 0, later ones the change since the oldest read of the last :data:`WINDOW_MS`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WINDOW_MS = 5 * 60_000
MIN_SPAN_MS = 1_000
"""Below this, two reads are too close to tell a rate from."""


@dataclass(frozen=True, slots=True)
class Sample:
    at: int
    processed: int
    failed: int


class Throughput:
    def __init__(self) -> None:
        self._samples: deque[Sample] = deque()

    def observe(self, at: int, processed: int, failed: int) -> tuple[float, float]:
        """Note the totals read at ``at``; ``(processed, failed)`` per minute."""
        samples = self._samples
        if samples and (processed < samples[-1].processed or failed < samples[-1].failed):
            samples.clear()  # jobs were deleted (retention, purge, reset): start over
        while len(samples) > 1 and samples[1].at <= at - WINDOW_MS:
            samples.popleft()
        if len(samples) > 1 and at - samples[-2].at < MIN_SPAN_MS:
            samples.pop()  # at most one sample a second, however often it is read
        samples.append(Sample(at, processed, failed))
        first = samples[0]
        span = at - first.at
        if span < MIN_SPAN_MS:
            return 0.0, 0.0
        per_minute = 60_000 / span
        return (
            round((processed - first.processed) * per_minute, 2),
            round((failed - first.failed) * per_minute, 2),
        )


__all__ = ["Throughput"]
