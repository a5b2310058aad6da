"""A rate-limit key's partition as stored (the snapshot ``ratelimit:<key>``, see
:mod:`.rate_limits`) and what the key decides for the jobs of one claim, with the
``rate_limit.*`` events the decision tells. Pure: no I/O.

Beside the counters, the partition holds the key's pause (ojs-rate-limiting §9): a
handler whose downstream rate-limited it reported ``rate_limit_until``
(:mod:`.rate_limit_pause`), and until then the key admits no job (``strategy``
``"dynamic"`` in ``rate_limit.exceeded``), whatever its limits or an override.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..core import Job, lifecycle
from ..core.events import envelope, new_event_id
from ..core.rate_policy import KeyedPolicy, Refusal, next_start_at, refusal
from .transitions import Transition

MAX_WAITING = 1_000
"""Refused jobs a partition remembers (for ``rate_limit.released`` and
``waiting_count``), the oldest forgotten first."""
PAUSED = "dynamic"
"""The ``strategy`` of a refusal by the key's pause (``rate_limit_until``)."""


@dataclass(slots=True)
class Partition:
    """A key's stored state, as read."""

    policy: dict[str, Any]
    active: list[str]
    starts: list[int]
    version: int | None
    override: dict[str, Any] | None = None
    """An operator's limits in place of the jobs' (``PUT /ojs/v1/rate-limits/{key}``)."""
    waiting: dict[str, str] = field(default_factory=dict)
    """Jobs the key refused and has not admitted since: id -> the limit that held them."""
    exceeded: str | None = None
    """The limit that refused the last job, until the key admits one again: one
    ``rate_limit.exceeded`` event per such spell, not one per refused claim."""
    paused_until: int | None = None
    """No job of the key starts before this (epoch ms): a handler's ``rate_limit_until``."""
    pause_reason: str | None = None

    @classmethod
    def of(cls, loaded: tuple[dict[str, Any], int] | None) -> Partition:
        if loaded is None:
            return cls({}, [], [], None)
        state, version = loaded
        return cls(
            dict(state.get("policy") or {}),
            list(state.get("active") or []),
            list(state.get("starts") or []),
            version,
            state.get("override"),
            dict(state.get("waiting") or {}),
            state.get("exceeded"),
            state.get("paused_until"),
            state.get("pause_reason"),
        )

    def record(self, key: str, now: int) -> dict[str, Any]:
        return {
            "key": key,
            "policy": self.policy,
            "active": self.active,
            "starts": self.starts,
            "override": self.override,
            "waiting": self.waiting,
            "exceeded": self.exceeded,
            "paused_until": self.paused_until,
            "pause_reason": self.pause_reason,
            "updated_at": now,
        }

    def paused_at(self, now: int) -> int | None:
        """Until when the key is paused, if it is at ``now``."""
        until = self.paused_until
        return until if until is not None and until > now else None


@dataclass(slots=True)
class Decision:
    """What a key decided for the jobs of one claim, and the events it tells."""

    taken: set[str] = field(default_factory=set)
    refused: dict[str, Transition] = field(default_factory=dict)
    """The transition handing each refused job back (``on_limit``)."""
    events: list[dict[str, Any]] = field(default_factory=list)


def set_policy(raw: dict[str, Any], part: Partition) -> bool:
    if part.policy == raw:
        return False
    part.policy = raw
    return True


def decide(
    key: str,
    part: Partition,
    policies: Sequence[tuple[Job, KeyedPolicy]],
    live: list[str],
    starts: list[int],
    now: int,
) -> Decision:
    """Admit what the key's limits allow of ``policies`` into ``live`` and ``starts``
    (changed in place, as ``part.waiting`` and ``part.exceeded``), with the events."""
    decision = Decision()
    promised = list(starts)
    """Starts made, and those promised to jobs rescheduled in this claim."""
    paused = part.paused_at(now)
    for job, policy in policies:
        why = (
            Refusal(PAUSED, 0, len(live))
            if paused is not None
            else refusal(policy, job.id, live, starts, now)
        )
        if why is None:
            decision.taken.add(job.id)
            if job.id not in live:
                live.append(job.id)
            if policy.window_ms:
                starts.append(now)
                promised.append(now)
            part.exceeded = None
            held = part.waiting.pop(job.id, None)
            if held is not None:
                data = {"key": key, "strategy": held, "job_id": job.id, "queue": job.queue}
                decision.events.append(event("rate_limit.released", key, now, data))
            continue
        if part.exceeded is None:
            decision.events.append(_exceeded(key, why, now))
        part.exceeded = why.strategy
        if policy.on_limit == "drop":
            decision.refused[job.id] = partial(lifecycle.rate_limited, until=None)
            part.waiting.pop(job.id, None)
            continue
        if policy.on_limit == "reschedule":
            at = next_start_at(policy, promised, now, why.strategy)
            at = max(at, paused or at)
            promised.append(at)
            decision.refused[job.id] = partial(lifecycle.rate_limited, until=at)
        part.waiting.setdefault(job.id, why.strategy)
        while len(part.waiting) > MAX_WAITING:
            del part.waiting[next(iter(part.waiting))]
    return decision


def _exceeded(key: str, why: Refusal, now: int) -> dict[str, Any]:
    data = {"key": key, "strategy": why.strategy, "limit": why.limit, "current": why.current}
    return event("rate_limit.exceeded", key, now, data)


def event(kind: str, key: str, now: int, data: dict[str, Any]) -> dict[str, Any]:
    return envelope(kind, key, now, data, new_event_id())


__all__ = ["MAX_WAITING", "PAUSED", "Decision", "Partition", "decide", "event", "set_policy"]
