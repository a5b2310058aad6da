"""How a job is stored in Redis: its record text and what the scripts need to index it.

A record is a JSON object mapping each key of ``Job.to_record()`` to that value's own
JSON text, so Lua's cjson can decode and re-encode a record losslessly (see the package
docstring)."""

from __future__ import annotations

import json
from typing import Any

import orjson

from ...core import Job, State
from ..base import timers_of
from ..codec import EXACT, dumps


def _record_text(record: dict[str, Any]) -> str:
    """The stored text of a record: each field's own JSON text, in one JSON object."""
    texts: dict[str, str] = {}
    fast = orjson.dumps
    for name, value in record.items():
        try:
            texts[name] = fast(value).decode()
        except orjson.JSONEncodeError:  # an integer beyond 64 bits (see ..codec)
            texts[name] = dumps(value)
            texts[EXACT] = "true"
    return fast(texts).decode()


def _job_of(raw: str | None) -> Job | None:
    """A job from its stored record text; ``None`` for a missing one (nil, ``""``).

    The record maps field names (plain identifiers) to JSON texts, so the whole
    record is rebuilt as one JSON object and parsed in one call."""
    if not raw:
        return None
    fields = orjson.loads(raw)  # field names to texts: strings only
    text = "{" + ",".join([f'"{name}":{text}' for name, text in fields.items()]) + "}"
    record = json.loads(text) if EXACT in fields else orjson.loads(text)
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
        "r": _record_text(record),
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
