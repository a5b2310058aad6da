"""Timestamps: the core keeps integer epoch milliseconds; the wire uses RFC 3339 UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from .errors import InvalidRequest

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
MIN_EPOCH_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the range format_ms can write
MAX_DURATION_MS = 100 * 365 * 86_400_000
"""Longest accepted duration (about a century): now plus any duration stays formattable."""


def format_ms(epoch_ms: int, *, whole_seconds_bare: bool = False) -> str:
    """``1700000000123`` -> ``'2023-11-14T22:13:20.123Z'``.

    ``whole_seconds_bare`` writes ``…:20Z`` rather than ``…:20.000Z`` for a whole
    second: the form clients usually send for the times they choose (``scheduled_at``,
    ``expires_at``), which are echoed back as given.
    """
    seconds, millis = divmod(epoch_ms, 1000)
    stamp = _second_stamp(seconds)
    if whole_seconds_bare and millis == 0:
        return f"{stamp}Z"
    return f"{stamp}.{millis:03d}Z"


@lru_cache(maxsize=256)
def _second_stamp(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of an epoch second, remembered: the jobs and events of
    one batch, and of one busy second, share a few instants."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat()


def parse_timestamp(value: object, field: str) -> int:
    """An RFC 3339 timestamp with a timezone designator, as epoch milliseconds."""
    invalid = InvalidRequest(
        f"'{field}' must be an RFC 3339 timestamp with a timezone, e.g. 2026-01-01T00:00:00Z.",
        details={"field": field, "received": value},
    )
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise invalid
    try:  # the pattern admits impossible dates (month 13) and years its offset pushes out of range
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
        epoch_ms = (parsed - _EPOCH) // timedelta(milliseconds=1)  # exact; float * 1000 is not
    except (ValueError, OverflowError):
        raise invalid from None
    if not MIN_EPOCH_MS <= epoch_ms <= MAX_EPOCH_MS:
        raise invalid
    return epoch_ms


_DURATION = re.compile(
    r"^P(?!$)(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration_ms(value: object, field: str) -> int:
    """An ISO 8601 duration limited to days, hours, minutes and seconds (``PT1.5S``), in ms.

    Years and months are refused: their length is ambiguous (ojs-retry §4.2).
    """
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidRequest(
            f"'{field}' must be an ISO 8601 duration such as PT1S, PT5M or P1DT2H.",
            details={"field": field, "received": value},
        )
    parts = {name: float(amount) for name, amount in match.groupdict().items() if amount}
    try:
        delta = timedelta(
            days=parts.get("days", 0.0),
            hours=parts.get("hours", 0.0),
            minutes=parts.get("minutes", 0.0),
            seconds=parts.get("seconds", 0.0),
        )
    except OverflowError:
        delta = timedelta.max
    ms = round(delta.total_seconds() * 1000)
    if ms > MAX_DURATION_MS:
        raise InvalidRequest(
            f"'{field}' must be at most {format_duration_ms(MAX_DURATION_MS)}.",
            details={"field": field, "received": value, "maximum_ms": MAX_DURATION_MS},
        )
    return ms


def format_duration_ms(ms: int) -> str:
    """``1500`` -> ``'PT1.5S'``: the inverse of :func:`parse_duration_ms` for time parts."""
    seconds = ms / 1000
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"
