"""Retry policy (ojs-retry.md): parsing, validation, backoff maths and the retry decision."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import InvalidRequest, ValidationFailed
from .timefmt import MAX_DURATION_MS, format_duration_ms, parse_duration_ms


class Backoff(StrEnum):
    NONE = "none"  # constant
    LINEAR = "linear"
    EXPONENTIAL = "exponential"
    POLYNOMIAL = "polynomial"


class Exhaustion(StrEnum):
    DISCARD = "discard"
    DEAD_LETTER = "dead_letter"


class HandlerCode(StrEnum):
    """Handler response codes of ojs-retry §7; they override the policy."""

    RETRY = "RETRY"
    DISCARD = "DISCARD"
    DEAD_LETTER = "DEAD_LETTER"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    initial_interval_ms: int = 1000
    backoff_coefficient: float = 2.0
    max_interval_ms: int = 300_000
    jitter: bool = True
    non_retryable_errors: tuple[str, ...] = ()
    on_exhaustion: Exhaustion = Exhaustion.DISCARD
    backoff: Backoff = Backoff.EXPONENTIAL

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "max_attempts": self.max_attempts,
            "initial_interval": format_duration_ms(self.initial_interval_ms),
            "backoff_coefficient": self.backoff_coefficient,
            "max_interval": format_duration_ms(self.max_interval_ms),
            "jitter": self.jitter,
            "non_retryable_errors": list(self.non_retryable_errors),
            "on_exhaustion": self.on_exhaustion.value,
        }
        if self.backoff is not Backoff.EXPONENTIAL:
            wire["backoff_strategy"] = self.backoff.value
        return wire


DEFAULT_POLICY = RetryPolicy()


def _invalid(field_name: str, message: str, received: object) -> ValidationFailed:
    return ValidationFailed(
        f"Invalid retry policy: {field_name} {message}.",
        details={"field": f"retry.{field_name}", "received": received, "rule": message},
    )


_PARSED: dict[tuple[Any, ...], RetryPolicy] = {}
_PARSED_LIMIT = 1024


def parse_policy(raw: object) -> RetryPolicy:
    """A wire retry object merged over the defaults (ojs-retry §8.1), validated per §11.1.

    Both the duration form (``initial_interval: "PT1S"``) and the millisecond form
    of the HTTP binding's example (``initial_interval_ms: 1000``) are accepted.
    Valid policies are remembered: every stored job carries its policy, and reading
    a job back would otherwise re-parse the same few policies again and again.
    """
    if raw is None:
        return DEFAULT_POLICY
    key = _memo_key(raw)
    if key is not None and (known := _PARSED.get(key)) is not None:
        return known
    policy = _parse_policy(raw)
    if key is not None:
        if len(_PARSED) >= _PARSED_LIMIT:
            _PARSED.clear()
        _PARSED[key] = policy
    return policy


def _memo_key(raw: object) -> tuple[Any, ...] | None:
    """A hashable key telling ``raw`` apart from any other wire policy (the value's
    type is part of it: ``1``, ``1.0`` and ``True`` hash alike); ``None`` if unusual."""
    if not isinstance(raw, dict):
        return None
    key: list[Any] = []
    for name, value in raw.items():
        if isinstance(value, list):
            if not all(type(item) is str for item in value):
                return None
            key.append((name, "list", *value))
        elif value is None or type(value) in (str, int, float, bool):
            key.append((name, type(value).__name__, value))
        else:
            return None
    return tuple(key)


def _parse_policy(raw: object) -> RetryPolicy:
    if not isinstance(raw, dict):
        raise InvalidRequest("'retry' must be an object.", details={"field": "retry"})
    values: dict[str, Any] = {}

    if "max_attempts" in raw:
        attempts = raw["max_attempts"]
        if not _is_int(attempts) or attempts < 0:
            raise _invalid("max_attempts", "must be a non-negative integer", attempts)
        values["max_attempts"] = attempts
    for name in ("initial_interval", "max_interval"):
        if name in raw:
            values[f"{name}_ms"] = parse_duration_ms(raw[name], f"retry.{name}")
        elif f"{name}_ms" in raw:
            ms = raw[f"{name}_ms"]
            if not _is_int(ms) or ms < 0:
                raise _invalid(f"{name}_ms", "must be a non-negative integer", ms)
            if ms > MAX_DURATION_MS:
                raise _invalid(f"{name}_ms", f"must be at most {MAX_DURATION_MS}", ms)
            values[f"{name}_ms"] = ms
    if "backoff_coefficient" in raw:
        coefficient = raw["backoff_coefficient"]
        if isinstance(coefficient, bool) or not isinstance(coefficient, int | float):
            raise _invalid("backoff_coefficient", "must be a number", coefficient)
        if coefficient < 1.0:
            raise _invalid("backoff_coefficient", "must be >= 1.0", coefficient)
        values["backoff_coefficient"] = float(coefficient)
    if "jitter" in raw:
        if not isinstance(raw["jitter"], bool):
            raise _invalid("jitter", "must be a boolean", raw["jitter"])
        values["jitter"] = raw["jitter"]
    if "non_retryable_errors" in raw:
        patterns = raw["non_retryable_errors"]
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise _invalid("non_retryable_errors", "must be an array of strings", patterns)
        values["non_retryable_errors"] = tuple(patterns)
    if "on_exhaustion" in raw:
        try:
            values["on_exhaustion"] = Exhaustion(raw["on_exhaustion"])
        except ValueError:
            raise _invalid(
                "on_exhaustion", "must be 'discard' or 'dead_letter'", raw["on_exhaustion"]
            ) from None
    if "backoff_strategy" in raw:
        try:
            values["backoff"] = Backoff(raw["backoff_strategy"])
        except ValueError:
            raise _invalid(
                "backoff_strategy",
                "must be one of none, linear, exponential, polynomial",
                raw["backoff_strategy"],
            ) from None

    policy = RetryPolicy(**values)
    if policy.initial_interval_ms <= 0:
        raise _invalid("initial_interval", "must be greater than zero", raw.get("initial_interval"))
    if policy.max_interval_ms < policy.initial_interval_ms:
        raise _invalid("max_interval", "must be >= initial_interval", raw.get("max_interval"))
    return policy


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def backoff_delay_ms(
    policy: RetryPolicy, retry_number: int, rng: random.Random | None = None
) -> int:
    """Delay before retry ``retry_number`` (1 = the first retry, i.e. attempt 2).

    Raw delay by strategy, capped at ``max_interval``, jittered by ×[0.5, 1.5),
    capped again (ojs-retry §3, §5).
    """
    base = policy.initial_interval_ms
    n = max(retry_number, 1)
    try:
        if policy.backoff is Backoff.NONE:
            raw = float(base)
        elif policy.backoff is Backoff.LINEAR:
            raw = float(base * n)
        elif policy.backoff is Backoff.POLYNOMIAL:
            raw = base * float(n) ** policy.backoff_coefficient
        else:
            raw = base * policy.backoff_coefficient ** (n - 1)
    except OverflowError:  # e.g. 2.0 ** 1024: beyond any cap
        raw = math.inf
    delay = min(raw, float(policy.max_interval_ms))
    if policy.jitter:
        delay = min(delay * (rng or random).uniform(0.5, 1.5), float(policy.max_interval_ms))
    return max(0, round(delay))


def matches_non_retryable(error_type: str, patterns: tuple[str, ...]) -> bool:
    """Exact match, or prefix match for entries ending in ``.*`` (ojs-retry §6.2)."""
    for pattern in patterns:
        if pattern.endswith(".*"):
            if error_type.startswith(pattern[:-1]):
                return True
        elif error_type == pattern:
            return True
    return False


@dataclass(frozen=True, slots=True)
class FailureDecision:
    """What a failed attempt leads to."""

    retry: bool
    delay_ms: int = 0
    dead_letter: bool = False
    reason: str = field(default="")


def decide_failure(
    policy: RetryPolicy,
    attempt: int,
    error_type: str,
    *,
    worker_says_retryable: bool = True,
    handler_code: HandlerCode = HandlerCode.RETRY,
    rng: random.Random | None = None,
) -> FailureDecision:
    """Retry with a backoff delay, or stop (to the dead-letter queue or not).

    Precedence (ojs-retry §7.2): handler response code, then non-retryable
    error types and the worker's own ``retryable: false``, then remaining attempts.
    """
    dead_letter_on_stop = policy.on_exhaustion is Exhaustion.DEAD_LETTER
    if handler_code is HandlerCode.DEAD_LETTER:
        return FailureDecision(retry=False, dead_letter=True, reason="handler_dead_letter")
    if handler_code in (HandlerCode.DISCARD, HandlerCode.FAIL):
        return FailureDecision(retry=False, reason="handler_discard")
    if matches_non_retryable(error_type, policy.non_retryable_errors):
        return FailureDecision(retry=False, dead_letter=dead_letter_on_stop, reason="non_retryable")
    if not worker_says_retryable:
        return FailureDecision(retry=False, dead_letter=dead_letter_on_stop, reason="not_retryable")
    if attempt >= policy.max_attempts:
        return FailureDecision(retry=False, dead_letter=dead_letter_on_stop, reason="exhausted")
    return FailureDecision(retry=True, delay_ms=backoff_delay_ms(policy, attempt, rng))
