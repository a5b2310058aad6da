"""A queue's own rate limit (ojs-rate-limiting §7.2, ``PUT
/ojs/v1/admin/queues/{name}/rate-limit``): concurrency, a window and a throttle over
every job of the queue, whatever the jobs' own ``rate_limit``.

It is a rate-limit partition like a key's (:mod:`.rate_limits`), under the key
``@queue:<name>``, which no job's key can be (keys start with a letter or digit): the
snapshot ``ratelimit:@queue:<name>`` holds the limit and its counters, written by
compare-and-set, so every process sharing the backend applies it. A QueueActor re-reads
the limit at most every ``poll_interval`` (the staleness of the queue's record).

A claimed job starts only if both its key and its queue let it (§7.2: "all limits MUST
be satisfied"). The queue's limit is looked at first without booking, the jobs it would
take go to their keys, and those their keys admit are booked in the queue's partition:
so a job one of the two refuses uses no slot or window start of the other (but for two
processes booking the queue's last slot at the same instant: the loser's job, already
booked in its key, hands its key's start back only when that start leaves the window).
A job the queue's limit refuses waits (``on_limit`` ``"wait"``, whatever its own). The
partition also holds the queue's pause (:mod:`.rate_limit_pause`): a handler of a job
without a rate-limit key reported ``rate_limit_until``; until then no job of the queue
starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..backends import Backend
from ..core import Job, State, lifecycle
from ..core.rate_policy import KeyedPolicy, keyed_policy, refusal
from .clock import Clock
from .rate_limits import KeyedLimiter, Partition
from .transitions import Transition

QUEUE_KEY_PREFIX = "@queue:"


def queue_key(queue: str) -> str:
    return QUEUE_KEY_PREFIX + queue


def queue_policy(queue: str, limits: dict[str, Any] | None) -> KeyedPolicy | None:
    """The stored limits of ``queue`` as a policy (validated when set)."""
    if not limits:
        return None
    parsed = keyed_policy({**limits, "key": "queue", "on_limit": "wait"})
    return None if parsed is None else dataclasses.replace(parsed, key=queue_key(queue))


class QueueLimiter(KeyedLimiter):
    """The rate limits of a QueueActor's claims: its jobs' keys and the queue's own limit
    (see the module's notes)."""

    def __init__(self, backend: Backend, clock: Clock, queue: str, refresh_ms: int) -> None:
        super().__init__(backend, clock)
        self.queue = queue
        self.key = queue_key(queue)
        self._refresh_ms = refresh_ms
        self._policy: KeyedPolicy | None = None
        self._read_at: int | None = None
        self._paused_until: int | None = None
        """The queue's pause (:mod:`.rate_limit_pause`), as last read or set here."""

    @property
    def limits_all(self) -> bool:  # type: ignore[override]
        return self._policy is not None or (self._paused_until or 0) > self.clock()

    def paused(self, until: int | None) -> None:
        """The queue's pause as just stored by this process."""
        self._paused_until = until

    async def refresh(self) -> None:
        """Re-read the queue's limit if the copy is older than ``poll_interval``."""
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self._refresh_ms:
            state = await self.backend.load_snapshot(self.prefix + self.key)
            self._policy = queue_policy(self.queue, (state or {}).get("policy"))
            self._paused_until = (state or {}).get("paused_until")
            self._read_at = now

    async def admit(self, claimed: Sequence[Job]) -> tuple[list[Job], dict[str, Transition]]:
        """As :meth:`KeyedLimiter.admit`, the queue's own limit (and pause) kept too."""
        policy = self._policy
        if policy is None and (self._paused_until or 0) > self.clock():
            policy = KeyedPolicy(self.key)  # no limits, but paused: every job waits
        if policy is None:
            return await super().admit(claimed)
        fits = await self._fits(policy, claimed)
        admitted, held = await super().admit([job for job in claimed if job.id in fits])
        group = [(job, policy) for job in admitted]
        group += [(job, policy) for job in claimed if job.id not in fits]  # refused: events
        taken = await self.admit_key(self.key, group)
        for job in claimed:
            if job.id not in taken:
                held.setdefault(job.id, lifecycle.requeue)
        return [job for job in admitted if job.id in taken], held

    async def _fits(self, policy: KeyedPolicy, claimed: Sequence[Job]) -> set[str]:
        """The jobs the queue's limit would let start now, nothing booked."""
        part = Partition.of(await self.backend.load_snapshot_versioned(self.prefix + self.key))
        now = self.clock()
        self._paused_until = part.paused_until
        if part.paused_at(now) is not None:
            return set()
        live = await self.jobs_in(part.active, (State.ACTIVE,))
        starts = [at for at in part.starts if at > now - policy.window_ms]
        fits: set[str] = set()
        for job in claimed:
            if refusal(policy, job.id, live, starts, now) is None:
                fits.add(job.id)
                live.append(job.id)
                if policy.window_ms:
                    starts.append(now)
        return fits


__all__ = ["QUEUE_KEY_PREFIX", "QueueLimiter", "queue_key", "queue_policy"]
