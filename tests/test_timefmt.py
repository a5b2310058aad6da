"""RFC 3339 timestamps and ISO 8601 durations (ojs-json-format, ojs-retry §4)."""

from __future__ import annotations

import random

import pytest

from ojs_actors.core.errors import InvalidRequest
from ojs_actors.core.timefmt import (
    format_duration_ms,
    format_ms,
    parse_duration_ms,
    parse_timestamp,
)

JAN_1_2026 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


# --------------------------------------------------------------------------- format_ms


@pytest.mark.parametrize(
    ("epoch_ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
        (JAN_1_2026, "2026-01-01T00:00:00.000Z"),
        (JAN_1_2026 + 999, "2026-01-01T00:00:00.999Z"),
    ],
)
def test_format_ms(epoch_ms: int, text: str) -> None:
    assert format_ms(epoch_ms) == text


def test_format_ms_is_utc_with_millisecond_precision() -> None:
    text = format_ms(1_234_567_890_123)
    assert text.endswith("Z")
    assert len(text) == len("2009-02-13T23:31:30.123Z")
    assert text == "2009-02-13T23:31:30.123Z"


# --------------------------------------------------------------------------- parse_timestamp


@pytest.mark.parametrize(
    ("text", "epoch_ms"),
    [
        ("2026-01-01T00:00:00Z", JAN_1_2026),
        ("2026-01-01T00:00:00.000Z", JAN_1_2026),
        ("2026-01-01T00:00:00.5Z", JAN_1_2026 + 500),
        ("2026-01-01T00:00:00.123Z", JAN_1_2026 + 123),
        ("2026-01-01T00:00:00.123456Z", JAN_1_2026 + 123),  # sub-ms truncated
        ("2026-01-01T00:00:00z", JAN_1_2026),
        ("2026-01-01t00:00:00Z", JAN_1_2026),
        ("2026-01-01 00:00:00Z", JAN_1_2026),
        ("2026-01-01T00:00:00+00:00", JAN_1_2026),
        ("2026-01-01T00:00:00-00:00", JAN_1_2026),
        ("2026-01-01T02:00:00+02:00", JAN_1_2026),
        ("2025-12-31T18:30:00-05:30", JAN_1_2026),
        ("2026-01-01T00:00:00+02:00", JAN_1_2026 - 2 * 3_600_000),
        ("2026-03-15T09:30:00+02:00", parse_timestamp("2026-03-15T07:30:00Z", "x")),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.999Z", -1),
    ],
)
def test_parse_timestamp(text: str, epoch_ms: int) -> None:
    assert parse_timestamp(text, "scheduled_at") == epoch_ms


def test_offsets_denote_the_same_instant() -> None:
    utc = parse_timestamp("2026-06-01T12:00:00Z", "t")
    assert parse_timestamp("2026-06-01T14:00:00+02:00", "t") == utc
    assert parse_timestamp("2026-06-01T07:00:00-05:00", "t") == utc
    assert parse_timestamp("2026-06-01T17:45:00+05:45", "t") == utc


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01T00:00:00",  # no timezone: MUST be rejected (ojs-core §5.5.2)
        "2026-01-01T00:00:00.123",
        "2026-01-01",
        "2026-01-01T00:00Z",
        "2026-01-01T00:00:00+0200",
        "2026-01-01T00:00:00+02",
        "2026-01-01T00:00:00 Z",
        "26-01-01T00:00:00Z",
        "2026/01/01T00:00:00Z",
        "not a timestamp",
        "",
        " 2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00Z ",
        "2026-01-01T00:00:00Z\n",
        # matches the shape but is not a real date-time
        "2026-02-30T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:60:00Z",
        "2026-01-01T00:00:00+25:00",
        None,
        JAN_1_2026,
        1767225600.0,
        ["2026-01-01T00:00:00Z"],
    ],
)
def test_parse_timestamp_rejects(value: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_timestamp(value, "expires_at")
    assert "expires_at" in info.value.message
    assert info.value.details["field"] == "expires_at"
    assert info.value.status == 400


def test_round_trip_known_values() -> None:
    for epoch_ms in (0, 1, -1, 999, 1_000, JAN_1_2026, 1_700_000_000_123, 4_102_444_799_999):
        assert parse_timestamp(format_ms(epoch_ms), "t") == epoch_ms


def test_round_trip_is_exact_where_float_seconds_would_round_down() -> None:
    # 1079337347.472 s is not representable as a binary float; multiplying the float
    # timestamp by 1000 gives ...471.99999 and truncation used to lose a millisecond.
    assert parse_timestamp(format_ms(1_079_337_347_472), "t") == 1_079_337_347_472
    assert parse_timestamp("2004-03-15T07:55:47.472Z", "t") == 1_079_337_347_472


def test_round_trip_random() -> None:
    rng = random.Random(20260101)
    for _ in range(20_000):
        epoch_ms = rng.randrange(-2_000_000_000_000, 4_102_444_800_000)
        assert parse_timestamp(format_ms(epoch_ms), "t") == epoch_ms


def test_format_of_parse_normalises_to_utc() -> None:
    assert format_ms(parse_timestamp("2026-01-01T02:00:00.250+02:00", "t")) == (
        "2026-01-01T00:00:00.250Z"
    )


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("PT0.5S", 500),
        ("PT1S", 1_000),
        ("PT1.5S", 1_500),
        ("PT0.001S", 1),
        ("PT0S", 0),
        ("PT5S", 5_000),
        ("PT30S", 30_000),
        ("PT1M", 60_000),
        ("PT5M", 300_000),
        ("PT15M", 900_000),
        ("PT1H", 3_600_000),
        ("PT24H", 86_400_000),
        ("PT1H30M", 5_400_000),
        ("PT1H2M3.5S", 3_723_500),
        ("PT90S", 90_000),
        ("P1D", 86_400_000),
        ("P1DT2H", 93_600_000),
        ("P2DT3H4M5S", 2 * 86_400_000 + 3 * 3_600_000 + 4 * 60_000 + 5_000),
    ],
)
def test_parse_duration_ms(text: str, ms: int) -> None:
    assert parse_duration_ms(text, "retry.initial_interval") == ms


@pytest.mark.parametrize(
    "value",
    [
        "P1Y",  # years: ambiguous length, refused
        "P1M",  # months: ambiguous length, refused
        "P1Y2M",
        "P1W",
        "1S",
        "PT",
        "P",
        "",
        "P1DT",
        "PT1",
        "T1S",
        "pt1s",
        "PT-1S",
        "PT1S ",
        " PT1S",
        "PT1S\n",
        "PT1M1H",  # out of order
        "PT.5S",
        "P9999999999D",  # out of any representable range
        None,
        1000,
        1.5,
        True,
    ],
)
def test_parse_duration_ms_rejects(value: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_duration_ms(value, "retry.max_interval")
    assert "retry.max_interval" in info.value.message
    assert info.value.details["field"] == "retry.max_interval"


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "PT0S"),
        (1, "PT0.001S"),
        (500, "PT0.5S"),
        (1_000, "PT1S"),
        (1_500, "PT1.5S"),
        (10_000, "PT10S"),
        (100_000, "PT100S"),
        (300_000, "PT300S"),
        (1_234_567, "PT1234.567S"),
    ],
)
def test_format_duration_ms(ms: int, text: str) -> None:
    assert format_duration_ms(ms) == text


def test_duration_round_trip() -> None:
    rng = random.Random(7)
    samples = [0, 1, 10, 999, 1_000, 60_000, 86_400_000] + [
        rng.randrange(0, 10**10) for _ in range(5_000)
    ]
    for ms in samples:
        assert parse_duration_ms(format_duration_ms(ms), "d") == ms
