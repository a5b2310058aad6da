"""Rate-limit keys as the API shows and changes them (ojs-rate-limiting §10): a key's
state (§10.1), every key (§10.3), and an operator's override of its limits (§10.2).

The override is part of the key's partition (the backend snapshot ``ratelimit:<key>``,
:mod:`.rate_limits`), written by compare-and-set like the rest of it, so every process
sharing the backend applies it at its next admission of a job of the key (as the key's
pause, :mod:`.rate_limit_pause`, which lifting the override lifts too). Jobs the
override lets go (it was lifted, or raised a limit) that wait on the key are found by
fetches at their next poll.
"""

from __future__ import annotations

from typing import Any

from ..core import InvalidRequest, NotFound, State, format_ms, parse_queue_name
from ..core.rate_policy import KEY_PATTERN, KeyedPolicy, keyed_policy, overridden, parse_override
from .queue_rate_limit import queue_key
from .rate_limits import PREFIX, KeyedLimiter, Partition


class RateLimitKeys:
    def __init__(self, limiter: KeyedLimiter) -> None:
        self._limiter = limiter
        self._backend = limiter.backend
        self._clock = limiter.clock

    async def inspect(self, key: str) -> dict[str, Any]:
        """The key's state (ojs-rate-limiting §10.1); :class:`NotFound` if no job named it
        and no override was set for it."""
        loaded = (
            await self._backend.load_snapshot_versioned(PREFIX + key)
            if KEY_PATTERN.fullmatch(key)
            else None
        )
        if loaded is None:
            raise _unknown(key)
        return await self.describe(key, Partition.of(loaded))

    async def list(self) -> list[dict[str, Any]]:
        """Every known key, by key (ojs-rate-limiting §10.3)."""
        records = await self._backend.list_snapshots(PREFIX)
        return [
            await self.describe(name[len(PREFIX) :], Partition.of((records[name], 0)))
            for name in sorted(records)
        ]

    async def set_override(self, key: str, body: object) -> dict[str, Any]:
        """Put an operator's limits in place of the jobs' own for ``key`` (§10.2), until
        ``expires_at`` (or until removed); a key no job named yet is created for it."""
        if not KEY_PATTERN.fullmatch(key):
            raise _unknown(key)
        override = parse_override(body, self._clock())

        def change(part: Partition) -> bool:
            part.override = override
            return True

        part = await self._limiter.update(key, change)
        if part is None:
            return await self.inspect(key)
        return await self.describe(key, part)

    async def clear_override(self, key: str) -> dict[str, Any]:
        """Lift the key's override and its pause (a handler's ``rate_limit_until``): the
        jobs' own limits apply again."""

        def change(part: Partition) -> bool:
            had = part.override is not None or part.paused_until is not None
            part.override = part.paused_until = part.pause_reason = None
            return had

        part = (
            await self._limiter.update(key, change, create=False)
            if KEY_PATTERN.fullmatch(key)
            else None
        )
        if part is None:
            raise _unknown(key)
        return await self.describe(key, part)

    async def set_queue_limit(self, queue: str, body: object) -> dict[str, Any]:
        """A queue's own limit (ojs-rate-limiting §7.2), in place of the one it had."""
        parse_queue_name(queue)
        if isinstance(body, dict) and "expires_at" in body:
            raise InvalidRequest(
                "A queue's rate limit has no 'expires_at': DELETE it to lift it.",
                details={"field": "expires_at"},
            )
        limits = parse_override(body, self._clock())["limits"]

        def change(part: Partition) -> bool:
            part.policy = limits
            return True

        part = await self._limiter.update(queue_key(queue), change)
        return (
            await self.queue_limit(queue) if part is None else await self._queue_wire(queue, part)
        )

    async def queue_limit(self, queue: str) -> dict[str, Any]:
        """A queue's own limit and its state (``rate_limit`` ``None``: it has none)."""
        parse_queue_name(queue)
        loaded = await self._backend.load_snapshot_versioned(PREFIX + queue_key(queue))
        if loaded is None or not (loaded[0].get("policy") or loaded[0].get("paused_until")):
            return {"queue": queue, "rate_limit": None}
        return await self._queue_wire(queue, Partition.of(loaded))

    async def clear_queue_limit(self, queue: str) -> dict[str, Any]:
        parse_queue_name(queue)
        await self._backend.delete_snapshot(PREFIX + queue_key(queue))
        return {"queue": queue, "rate_limit": None}

    async def _queue_wire(self, queue: str, part: Partition) -> dict[str, Any]:
        state = await self.describe(queue_key(queue), part)
        return {"queue": queue, "rate_limit": state.pop("policy") or None, "state": state}

    async def describe(self, key: str, part: Partition) -> dict[str, Any]:
        now = self._clock()
        # a queue's limit has no key of its own: parsed under a stand-in
        own = keyed_policy({**part.policy, "key": "k"}) if part.policy else None
        override = part.override
        if override is not None and (override.get("expires_at") or now + 1) <= now:
            override = None
        policy = overridden(own or KeyedPolicy(key), override, now)
        live = await self._limiter.jobs_in(part.active, (State.ACTIVE,))
        waiting = await self._limiter.jobs_in(
            list(part.waiting), (State.AVAILABLE, State.SCHEDULED)
        )
        wire: dict[str, Any] = {"key": key, "policy": part.policy, "waiting_count": len(waiting)}
        paused = part.paused_at(now)
        if paused is not None:
            wire["paused_until"] = format_ms(paused)  # ojs-rate-limiting §9
            wire["pause_reason"] = part.pause_reason
        if override is not None:
            expires_at = override.get("expires_at")
            wire["override"] = {
                **override["limits"],
                "expires_at": format_ms(expires_at) if expires_at is not None else None,
            }
        if own is None and override is None:
            return wire
        if policy.concurrency is not None:
            wire["concurrency"] = {
                "limit": policy.concurrency,
                "active": len(live),
                "available": max(policy.concurrency - len(live), 0),
            }
        else:
            wire["concurrency"] = {"limit": None, "active": len(live), "available": None}
        if policy.rate is not None:
            window = [at for at in part.starts if at > now - policy.rate.period_ms]
            wire["rate"] = {
                "limit": policy.rate.limit,
                "period_ms": policy.rate.period_ms,
                "current_count": len(window),
                "window_resets_at": format_ms(
                    (min(window) if window else now) + policy.rate.period_ms
                ),
            }
        gap = policy.throttle_gap_ms
        if policy.throttle is not None and gap is not None:
            last = max(part.starts, default=None)
            wire["throttle"] = {
                "limit": policy.throttle.limit,
                "period_ms": policy.throttle.period_ms,
                "next_allowed_at": format_ms(max(now, (last or now) + gap)),
            }
        return wire


def _unknown(key: str) -> NotFound:
    return NotFound(
        f"Rate limit key '{key}' not found.",
        details={"resource_type": "rate_limit", "resource_id": key},
    )


__all__ = ["RateLimitKeys"]
