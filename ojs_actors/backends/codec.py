"""JSON for stored records: fast (``orjson``) and exact.

``orjson`` writes and reads JSON several times faster than the standard library, which
is most of the Python cost of storing a job. It refuses to write integers beyond 64 bits
and reads them back as floats, so a record holding one is written by the standard
library with the marker field :data:`EXACT`, and read back by the standard library too
(``Job.from_record`` ignores the field). NaN and the infinities, which JSON lacks and
the HTTP API refuses, are written as null by ``orjson``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

EXACT = "_exact"
"""Marks a record with an integer beyond 64 bits: written and read by the standard library."""

_stdlib_dumps = json.JSONEncoder(separators=(",", ":")).encode


def dumps(value: Any) -> str:
    """Compact JSON text of ``value`` (the standard library's where ``orjson`` refuses)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return _stdlib_dumps(value)


def dumps_record(record: dict[str, Any]) -> str:
    """A record's stored text; marked with :data:`EXACT` if ``orjson`` cannot write it."""
    try:
        return orjson.dumps(record).decode()
    except orjson.JSONEncodeError:
        return _stdlib_dumps({**record, EXACT: True})


def loads_record(text: str) -> dict[str, Any]:
    """A record from its stored text (:func:`dumps_record`), exactly."""
    record: dict[str, Any] = orjson.loads(text)
    if EXACT in record:
        record = json.loads(text)
    return record
