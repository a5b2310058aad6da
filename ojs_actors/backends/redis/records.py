"""How a job is stored in Redis: its record text and what the scripts need to index it.

A record is a JSON object mapping each key of ``Job.to_record()`` to that value's own
JSON text, so Lua's cjson can decode and re-encode a record losslessly (see the package
docstring)."""

from __future__ import annotations

import json
from typing import Any

import orjson

from ...core import Job, State
from ..base import JobQuery, SortKey, timers_of, type_matches
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


class _Listing:
    """Which stored records a :class:`~ojs_actors.backends.base.JobQuery` takes, and their
    sort keys, read from the few fields it needs without building the jobs: the queue and
    state are compared as stored texts (validated names: one JSON text each), the other
    fields decoded only when the query needs them."""

    __slots__ = ("_query", "_queue", "_queues", "_state", "_times", "_type")

    def __init__(self, query: JobQuery) -> None:
        self._query = query
        self._queue = None if query.queue is None else orjson.dumps(query.queue).decode()
        self._queues = (
            None if query.queues is None else {orjson.dumps(q).decode() for q in query.queues}
        )
        self._state = None if query.state is None else orjson.dumps(query.state.value).decode()
        self._type = query.type
        self._times = query.since is not None or query.until is not None

    def key(self, job_id: str, raw: str) -> SortKey | None:
        """The sort key of the stored job ``raw`` if the query takes it, else ``None``."""
        fields = orjson.loads(raw)
        if self._queue is not None and fields["queue"] != self._queue:
            return None
        if self._queues is not None and fields["queue"] not in self._queues:
            return None
        if self._state is not None and fields["state"] != self._state:
            return None
        read = json.loads if EXACT in fields else orjson.loads
        query = self._query
        created_at = int(fields.get("created_at", 0))
        if self._type is not None and not type_matches(self._type, read(fields["type"])):
            return None
        if self._times and not query.created_within(created_at):
            return None
        scheduled = fields.get("scheduled_at")  # absent when None (Job.to_record)
        return query.key_of(
            job_id,
            created_at,
            None if scheduled is None else int(scheduled),
            int(fields.get("priority", 0)),
        )


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
