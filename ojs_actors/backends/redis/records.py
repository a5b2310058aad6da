"""How a job is stored in Redis: its record text and what the scripts need to index it.

A record is a JSON object mapping each key of ``Job.to_record()`` to that value's own
JSON text, so Lua's cjson can decode and re-encode a record losslessly (see the package
docstring)."""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any

from ...core import Job, State
from ..base import timers_of

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _field_text(value: Any) -> str:
    """``_dumps(value)``, with the common scalars done without the encoder's overhead
    (a record has some thirty fields; this is most of the cost of writing one)."""
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)  # what json.dumps does for a str
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    return _dumps(value)


def _job_of(raw: str | None) -> Job | None:
    """A job from its stored record text; ``None`` for a missing one (nil, ``""``).

    The record maps field names (plain identifiers) to JSON texts, so the whole
    record is rebuilt as one JSON object and parsed in one call."""
    if not raw:
        return None
    fields = json.loads(raw)
    record = json.loads("{" + ",".join([f'"{name}":{text}' for name, text in fields.items()]) + "}")
    return Job.from_record(record)


def _op(job: Job, expected: int = -1) -> dict[str, Any]:
    """What the scripts need to write ``job``: its record text and its index entries."""
    record = job.to_record()
    if job.state is State.AVAILABLE:
        record.pop("seq", None)  # the script appends the seq Redis hands out
    due = timers_of(job)
    return {
        "id": job.id,
        "v": job.version,
        "e": expected,
        "r": _dumps({name: _field_text(value) for name, value in record.items()}),
        "q": job.queue,
        "s": job.state.value,
        "p": job.priority,
        "d": min(due) if due else -1,
        "dl": job.state is State.DISCARDED and job.dead_letter,
        "uk": job.unique_key or "",
    }


def _take_records(ops: list[dict[str, Any]]) -> list[str]:
    """The ops' record texts, taken out: they go as script arguments of their own
    (``ARGV[2 + i]`` for op ``i``), not escaped a second time inside the spec's JSON."""
    return [op.pop("r") for op in ops]
