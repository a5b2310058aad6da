"""Job identifiers: lowercase hyphenated UUIDv7 (RFC 9562)."""

from __future__ import annotations

import re

import uuid_utils

_UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def new_id() -> str:
    return str(uuid_utils.uuid7())


def is_uuid7(value: object) -> bool:
    return isinstance(value, str) and _UUID7.fullmatch(value) is not None
