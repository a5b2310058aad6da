"""A job's ``options.rate_limit``, parsed: the keyed policy of ojs-rate-limiting §6.

Two forms are accepted. The keyed one (``key`` with ``concurrency``, ``rate``,
``throttle``, ``on_limit``) partitions limits by key across queues; ``rate`` may be the
spec's object (``{"limit": 100, "period": "PT1M"}``) or, as the ext-rate-limiting suite
sends it, a number beside ``period`` (``"rate": 1, "period": "second"``). The older
``max_per_second`` form (the level-4 suite's) limits the job's queue and has no key.

Pure: parsing and the arithmetic of a limit, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequest
from .timefmt import parse_duration_ms, parse_timestamp

KEY_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._:-]*")
"""ojs-rate-limiting §6.2 ``key``."""
MAX_KEY_LENGTH = 255
NAMED_PERIODS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
ON_LIMIT = ("wait", "reschedule", "drop")
CONCURRENCY_RETRY_MS = 1_000
"""When a job refused for its key's concurrency is rescheduled to (``on_limit:
"reschedule"``): no clock says when a slot frees, so it looks again a second later."""


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` starts in any ``period_ms`` (a sliding window)."""

    limit: int
    period_ms: int


@dataclass(frozen=True, slots=True)
class KeyedPolicy:
    key: str
    concurrency: int | None = None
    rate: Window | None = None
    throttle: Window | None = None
    """Even spacing: one start per ``period_ms / limit`` at most."""
    on_limit: str = "wait"

    @property
    def throttle_gap_ms(self) -> int | None:
        throttle = self.throttle
        return None if throttle is None else max(throttle.period_ms // throttle.limit, 1)

    @property
    def window_ms(self) -> int:
        """How long a start counts against this policy (the longest window it has)."""
        spans = [w.period_ms for w in (self.rate, self.throttle) if w is not None]
        return max(spans, default=0)


def check_rate_limit(raw: object) -> None:
    """Raise :class:`InvalidRequest` (or :class:`Unsupported`) unless ``raw`` is a rate
    limit this server enforces."""
    if not isinstance(raw, dict):
        raise _bad("rate_limit", "must be an object", raw)
    if "key" not in raw:
        per_second = raw.get("max_per_second")
        if not isinstance(per_second, int) or isinstance(per_second, bool) or per_second < 1:
            raise _bad("rate_limit.max_per_second", "must be an integer of at least 1", per_second)
        return
    keyed_policy(raw)


def keyed_policy(raw: object) -> KeyedPolicy | None:
    """The keyed policy of a job's ``rate_limit`` (``None`` for none or the keyless
    ``max_per_second`` form); raises :class:`InvalidRequest` if it is malformed."""
    if not isinstance(raw, dict) or "key" not in raw:
        return None
    key = raw["key"]
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not KEY_PATTERN.fullmatch(key):
        raise _bad("rate_limit.key", "must match ^[a-zA-Z0-9][a-zA-Z0-9._:-]*$", key)
    concurrency = raw.get("concurrency")
    if concurrency is not None and (not _is_int(concurrency) or concurrency < 0):
        raise _bad("rate_limit.concurrency", "must be an integer of at least 0", concurrency)
    on_limit = raw.get("on_limit", "wait")
    if on_limit not in ON_LIMIT:
        raise _bad("rate_limit.on_limit", "must be one of wait, reschedule, drop", on_limit)
    return KeyedPolicy(
        key=key,
        concurrency=concurrency,
        rate=_window(raw.get("rate"), raw.get("period"), "rate"),
        throttle=_window(raw.get("throttle"), None, "throttle"),
        on_limit=on_limit,
    )


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a key refuses a start: the limit hit (ojs-rate-limiting §11.1
    ``rate_limit.exceeded``: ``strategy``, ``limit``, ``current``)."""

    strategy: str
    limit: int
    current: int


def refusal(
    policy: KeyedPolicy, job_id: str, live: list[str], starts: list[int], now: int
) -> Refusal | None:
    """Why ``policy`` keeps ``job_id`` from starting now, given the key's active holders
    and its recent starts; ``None`` if it may start (a job already holding a slot,
    reclaimed, keeps it)."""
    if policy.concurrency is not None:
        others = len(live) - (1 if job_id in live else 0)
        if others >= policy.concurrency:
            return Refusal("concurrency", policy.concurrency, others)
    rate = policy.rate
    if rate is not None:
        in_window = sum(1 for at in starts if at > now - rate.period_ms)
        if in_window >= rate.limit:
            return Refusal("rate", rate.limit, in_window)
    gap = policy.throttle_gap_ms
    if gap is not None and starts and now - max(starts) < gap:
        return Refusal("throttle", policy.throttle.limit if policy.throttle else 0, 1)
    return None


def next_start_at(policy: KeyedPolicy, starts: list[int], now: int, strategy: str) -> int:
    """When the key is expected to let one more job start (``on_limit: "reschedule"``):
    the oldest start of a full window leaves it, the throttle's gap has passed; for a
    full concurrency limit, :data:`CONCURRENCY_RETRY_MS` from now. ``starts`` may hold
    the times already promised to jobs rescheduled before this one."""
    at = now + CONCURRENCY_RETRY_MS if strategy == "concurrency" else now
    ordered = sorted(starts)
    rate = policy.rate
    if rate is not None and len(ordered) >= rate.limit:
        at = max(at, ordered[len(ordered) - rate.limit] + rate.period_ms)
    gap = policy.throttle_gap_ms
    if gap is not None and ordered:
        at = max(at, ordered[-1] + gap)
    return at


def overridden(policy: KeyedPolicy, override: dict[str, Any] | None, now: int) -> KeyedPolicy:
    """``policy`` with the limits of an operator's override (``PUT
    /ojs/v1/rate-limits/{key}``) in place of its own, until the override expires."""
    if not override:
        return policy
    expires_at = override.get("expires_at")
    if expires_at is not None and now >= expires_at:
        return policy
    limits = keyed_policy({"key": policy.key, **override.get("limits", {})})
    assert limits is not None
    fields = override.get("limits", {})
    return KeyedPolicy(
        key=policy.key,
        concurrency=limits.concurrency if "concurrency" in fields else policy.concurrency,
        rate=limits.rate if "rate" in fields else policy.rate,
        throttle=limits.throttle if "throttle" in fields else policy.throttle,
        on_limit=policy.on_limit,
    )


def parse_override(body: object, now: int) -> dict[str, Any]:
    """The body of ``PUT /ojs/v1/rate-limits/{key}`` (ojs-rate-limiting §10.2) as stored:
    ``{"limits": {...}, "expires_at": ms | None}``. Each of ``concurrency``, ``rate``,
    ``throttle`` given replaces the jobs' own (``null``: none of that kind meanwhile)."""
    if not isinstance(body, dict):
        raise _bad("body", "must be a JSON object", None)
    limits = {name: body[name] for name in ("concurrency", "rate", "throttle") if name in body}
    if "rate" in limits and "period" in body:
        limits["period"] = body["period"]
    if not limits:
        raise InvalidRequest(
            "An override names at least one of 'concurrency', 'rate', 'throttle'.",
            details={"field": "concurrency"},
        )
    keyed_policy({"key": "override", **limits})  # raises on a malformed limit
    expires_at = body.get("expires_at")
    if expires_at is not None:
        expires_at = parse_timestamp(expires_at, "expires_at")
        if expires_at <= now:
            raise _bad("expires_at", "must be in the future", body["expires_at"])
    return {"limits": limits, "expires_at": expires_at}


def _window(value: object, sibling_period: object, field: str) -> Window | None:
    if value is None:
        return None
    if isinstance(value, dict):
        limit, period = value.get("limit"), value.get("period")
        limit_field, period_field = f"rate_limit.{field}.limit", f"rate_limit.{field}.period"
    else:
        limit, period = value, sibling_period if sibling_period is not None else "second"
        limit_field, period_field = f"rate_limit.{field}", "rate_limit.period"
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise _bad(limit_field, "must be an integer of at least 1", limit)
    period_ms = (
        NAMED_PERIODS[period]
        if isinstance(period, str) and period in NAMED_PERIODS
        else parse_duration_ms(period, period_field)
    )
    if period_ms < 1:
        raise _bad(period_field, "must be a positive duration", period)
    return Window(limit, period_ms)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad(field: str, message: str, received: Any) -> InvalidRequest:
    details: dict[str, Any] = {"field": field}
    if received is not None and not isinstance(received, dict | list):
        details["received"] = received
    return InvalidRequest(f"'{field}' {message}.", details=details)
