"""The API of queue bounds and rate-limit keys (``/ojs/v1/admin/queues/{name}/config``,
``/ojs/v1/rate-limits``): bounds go through the queue's actor, which keeps them in the
queue's record; keys are read from their partitions (:mod:`.rate_limits`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..backends import Backend
from ..core import Job, parse_queue_name
from .backpressure import BLOCK_WAIT, Bound, PressureLog
from .clock import Clock
from .queue_messages import SetBound
from .queue_size import check_countable
from .rate_limit_keys import RateLimitKeys
from .rate_limits import KeyedLimiter, policy_of
from .routing import QueueRouter

T = TypeVar("T")


class Limits:
    def __init__(self, router: QueueRouter, backend: Backend, clock: Clock) -> None:
        self._router = router
        self._keys = RateLimitKeys(KeyedLimiter(backend, clock))
        self._backend = backend
        self._pressure = router.pressure
        self._pressure_log = PressureLog(backend, clock)
        self.pressure_headers = router.pressure.headers
        """``X-OJS-Queue-*`` warning headers of a bounded queue under pressure (§7.3)."""

    def enqueue_headers(self, job: Job) -> dict[str, str]:
        """Headers of the response to a job's enqueue: its queue's pressure (past the
        warning threshold) and its rate-limit key's window."""
        return {**self.pressure_headers(job.queue), **rate_headers(job)}

    async def set_bound(self, queue: str, bound: Bound | None) -> dict[str, Any]:
        """Bound (or unbound, ``None``) a queue's depth; the queue's record as stored."""
        if bound is not None and bound.max_size_bytes:
            check_countable(self._backend)  # 422 where the sizes cannot be counted
        record: dict[str, Any] = await self._router.ask(parse_queue_name(queue), SetBound(bound))
        return record

    async def blocking(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` (an enqueue), waiting for room in a full queue of the ``block``
        strategy for as long as the request allows (:data:`.backpressure.BLOCK_WAIT`,
        ojs-backpressure §5.2); 429 ``QUEUE_FULL`` after that."""
        return await self._pressure.blocking(attempt, BLOCK_WAIT.get(), self._pressure_log)

    async def rate_limit(self, key: str) -> dict[str, Any]:
        """A rate-limit key's state; :class:`NotFound` if no job ever named it."""
        return await self._keys.inspect(key)

    async def rate_limits(self) -> list[dict[str, Any]]:
        return await self._keys.list()

    async def override_rate_limit(self, key: str, body: object) -> dict[str, Any]:
        """An operator's limits for ``key`` in place of its jobs' (ojs-rate-limiting §10.2)."""
        return await self._keys.set_override(key, body)

    async def clear_rate_limit_override(self, key: str) -> dict[str, Any]:
        return await self._keys.clear_override(key)

    async def set_queue_rate_limit(self, queue: str, body: object) -> dict[str, Any]:
        """A queue's own rate limit (ojs-rate-limiting §7.2), over all its jobs."""
        return await self._keys.set_queue_limit(queue, body)

    async def queue_rate_limit(self, queue: str) -> dict[str, Any]:
        return await self._keys.queue_limit(queue)

    async def clear_queue_rate_limit(self, queue: str) -> dict[str, Any]:
        return await self._keys.clear_queue_limit(queue)


def rate_headers(job: Job) -> dict[str, str]:
    """``X-RateLimit-Limit`` of an enqueue response for a job with a keyed window or
    throttle (ojs-rate-limiting §10.4): the most starts its key allows per window."""
    policy = policy_of(job)
    if policy is None:
        return {}
    window = policy.rate or policy.throttle
    if window is None:
        return {}
    return {"X-RateLimit-Limit": str(window.limit)}


__all__ = ["Limits"]
