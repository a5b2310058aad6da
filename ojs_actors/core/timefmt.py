"""Timestamps: the core keeps integer epoch milliseconds; the wire uses RFC 3339 UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .errors import InvalidRequest

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def format_ms(epoch_ms: int) -> str:
    """``1700000000123`` -> ``'2023-11-14T22:13:20.123Z'``."""
    seconds, millis = divmod(epoch_ms, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


def parse_timestamp(value: object, field: str) -> int:
    """An RFC 3339 timestamp with a timezone designator, as epoch milliseconds."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise InvalidRequest(
            f"'{field}' must be an RFC 3339 timestamp with a timezone, e.g. 2026-01-01T00:00:00Z.",
            details={"field": field, "received": value},
        )
    parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    return int(parsed.timestamp() * 1000)


_DURATION = re.compile(
    r"^P(?!$)(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration_ms(value: object, field: str) -> int:
    """An ISO 8601 duration limited to days, hours, minutes and seconds (``PT1.5S``), in ms.

    Years and months are refused: their length is ambiguous (ojs-retry §4.2).
    """
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidRequest(
            f"'{field}' must be an ISO 8601 duration such as PT1S, PT5M or P1DT2H.",
            details={"field": field, "received": value},
        )
    parts = {name: float(amount) for name, amount in match.groupdict().items() if amount}
    delta = timedelta(
        days=parts.get("days", 0.0),
        hours=parts.get("hours", 0.0),
        minutes=parts.get("minutes", 0.0),
        seconds=parts.get("seconds", 0.0),
    )
    return round(delta.total_seconds() * 1000)


def format_duration_ms(ms: int) -> str:
    """``1500`` -> ``'PT1.5S'``: the inverse of :func:`parse_duration_ms` for time parts."""
    seconds = ms / 1000
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"
