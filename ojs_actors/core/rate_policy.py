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

from .errors import InvalidRequest, Unsupported
from .timefmt import parse_duration_ms

KEY_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._:-]*")
"""ojs-rate-limiting §6.2 ``key``."""
MAX_KEY_LENGTH = 255
NAMED_PERIODS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
ON_LIMIT_SUPPORTED = ("wait",)


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
    if on_limit not in ("wait", "reschedule", "drop"):
        raise _bad("rate_limit.on_limit", "must be one of wait, reschedule, drop", on_limit)
    if on_limit not in ON_LIMIT_SUPPORTED:
        raise Unsupported(
            f"rate_limit.on_limit '{on_limit}' is not supported by this server; "
            "rate-limited jobs wait ('wait').",
            details={"field": "rate_limit.on_limit", "received": on_limit},
        )
    return KeyedPolicy(
        key=key,
        concurrency=concurrency,
        rate=_window(raw.get("rate"), raw.get("period"), "rate"),
        throttle=_window(raw.get("throttle"), None, "throttle"),
    )


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
