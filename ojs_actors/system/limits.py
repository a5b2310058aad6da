"""The API of queue bounds and rate-limit keys (``/ojs/v1/admin/queues/{name}/config``,
``/ojs/v1/rate-limits``): bounds go through the queue's actor, which keeps them in the
queue's record; keys are read from their partitions (:mod:`.rate_limits`)."""

from __future__ import annotations

from typing import Any

from ..backends import Backend
from ..core import Job, NotFound, parse_queue_name
from ..core.rate_policy import KEY_PATTERN
from .backpressure import Bound
from .clock import Clock
from .queue_messages import SetBound
from .rate_limits import KeyedLimiter, rate_headers
from .routing import QueueRouter


class Limits:
    def __init__(self, router: QueueRouter, backend: Backend, clock: Clock) -> None:
        self._router = router
        self._keys = KeyedLimiter(backend, clock)
        self.pressure_headers = router.pressure.headers
        """``X-OJS-Queue-*`` warning headers of a bounded queue under pressure (§7.3)."""

    def enqueue_headers(self, job: Job) -> dict[str, str]:
        """Headers of the response to a job's enqueue: its queue's pressure (past the
        warning threshold) and its rate-limit key's window."""
        return {**self.pressure_headers(job.queue), **rate_headers(job)}

    async def set_bound(self, queue: str, bound: Bound | None) -> dict[str, Any]:
        """Bound (or unbound, ``None``) a queue's depth; the queue's record as stored."""
        record: dict[str, Any] = await self._router.ask(parse_queue_name(queue), SetBound(bound))
        return record

    async def rate_limit(self, key: str) -> dict[str, Any]:
        """A rate-limit key's state; :class:`NotFound` if no job ever named it."""
        state = await self._keys.inspect(key) if KEY_PATTERN.fullmatch(key) else None
        if state is None:
            raise NotFound(
                f"Rate limit key '{key}' not found.",
                details={"resource_type": "rate_limit", "resource_id": key},
            )
        return state

    async def rate_limits(self) -> list[dict[str, Any]]:
        return await self._keys.list()


__all__ = ["Limits"]
