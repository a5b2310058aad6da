"""The job envelope (ojs-core §5) as one slotted dataclass.

Times are integer epoch milliseconds inside; :meth:`Job.to_wire` renders the
wire form of the HTTP binding (RFC 3339 strings, ``max_attempts``,
``timeout_ms``), and :meth:`Job.to_record` / :meth:`Job.from_record` give the
lossless form backends store, including the bookkeeping clients never see
(``version`` for compare-and-set, ``seq`` for FIFO order, the lease deadline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter
from typing import Any

from .progress import view as progress_view
from .retry import DEFAULT_POLICY, RetryPolicy, parse_policy
from .states import State
from .timefmt import format_ms

SPEC_VERSION = "1.0"
DEFAULT_VISIBILITY_TIMEOUT_MS = 1_800_000
"""ojs-worker-protocol §5: "The default visibility timeout is 1800 seconds". (The HTTP
binding's option table says 30000 ms; the worker protocol is the normative text here, and
conformance case L2-CRON-005 needs a lease that outlives 65 s without heartbeats.)"""


class _NoResult:
    """Type of :data:`NO_RESULT`: a singleton that ``copy.deepcopy`` and pickle keep as is."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "NO_RESULT"

    def __repr__(self) -> str:
        return "NO_RESULT"


NO_RESULT: Any = _NoResult()
"""Marks a job without a result (``None`` is a valid result: JSON null)."""


TENANT_SHARD_MARK = "..t."
"""Where a tenant's queue name (:func:`ojs_actors.system.tenancy.shard_of`) continues past
the queue its jobs were enqueued to: the wire shows the latter."""


@dataclass(slots=True)
class Job:
    id: str
    type: str
    args: list[Any]
    queue: str = "default"
    meta: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    retry: RetryPolicy = DEFAULT_POLICY
    timeout_ms: int | None = None
    visibility_timeout_ms: int = DEFAULT_VISIBILITY_TIMEOUT_MS
    scheduled_at: int | None = None
    expires_at: int | None = None
    tags: Sequence[str] = ()
    unique: dict[str, Any] | None = None
    unique_key: str | None = None
    rate_limit: dict[str, Any] | None = None
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Unknown top-level attributes, preserved as received (ojs-core §5.5.4)."""

    state: State = State.AVAILABLE
    attempt: int = 0
    created_at: int = 0
    enqueued_at: int | None = None
    started_at: int | None = None
    completed_at: int | None = None
    cancelled_at: int | None = None
    discarded_at: int | None = None
    next_attempt_at: int | None = None
    retry_delay_ms: int | None = None
    worker_id: str | None = None
    error: dict[str, Any] | None = None
    errors: Sequence[dict[str, Any]] = ()
    result: Any = NO_RESULT
    progress: dict[str, Any] | None = None
    """The last progress report of an attempt (:mod:`.progress`); read through
    :func:`.progress.view`."""

    lease_expires_at: int | None = None
    dead_letter: bool = False
    version: int = 0
    changed_at: int = 0
    """When this version was made (0: as created, at ``created_at``); events are dated by it."""
    seq: int = 0

    def evolve(self) -> Job:
        """A shallow copy to build the next version of this job from."""
        return Job(*_field_values(self))

    @property
    def has_result(self) -> bool:
        return self.result is not NO_RESULT

    def clear_result(self) -> None:
        self.result = NO_RESULT

    @property
    def timeout_at(self) -> int | None:
        """When the current attempt exceeds its execution timeout, if one was set."""
        if self.timeout_ms and self.started_at is not None and self.state is State.ACTIVE:
            return self.started_at + self.timeout_ms
        return None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = dict(self.extra)
        wire.update(
            specversion=SPEC_VERSION,
            id=self.id,
            type=self.type,
            queue=self.queue.partition(TENANT_SHARD_MARK)[0],  # the queue asked for
            args=self.args,
            meta=self.meta,
            priority=self.priority,
            state=self.state.value,
            attempt=self.attempt,
            max_attempts=self.retry.max_attempts,
            retry=_retry_wire(self.retry),
            visibility_timeout_ms=self.visibility_timeout_ms,
            created_at=format_ms(self.created_at),
        )
        for name in _OPTIONAL_TIMES:
            value = getattr(self, name)
            if value is not None:
                wire[name] = format_ms(value, whole_seconds_bare=name in _CLIENT_TIMES)
        if self.timeout_ms is not None:
            wire["timeout_ms"] = self.timeout_ms
        if self.tags:
            wire["tags"] = self.tags
        if self.unique is not None:
            wire["unique"] = self.unique
            wire["unique_key"] = self.unique_key
        if self.rate_limit is not None:
            wire["rate_limit"] = self.rate_limit
        if self.schema is not None:
            wire["schema"] = self.schema
        if self.retry_delay_ms is not None:
            wire["retry_delay_ms"] = self.retry_delay_ms
        if self.worker_id is not None:
            wire["worker_id"] = self.worker_id
        if self.error is not None:
            wire["error"] = self.error
        if self.errors:
            wire["errors"] = self.errors
        if self.has_result:
            wire["result"] = self.result
        if self.progress is not None:
            shown = progress_view(self.progress, self.state, self.attempt, self.started_at)
            if shown is not None:
                wire["progress"] = shown
        if self.lease_expires_at is not None and self.state is State.ACTIVE:
            wire["visibility_expires_at"] = format_ms(self.lease_expires_at)
        return wire

    def to_record(self) -> dict[str, Any]:
        """Everything, losslessly, in JSON-native types: what a backend stores."""
        record: dict[str, Any] = {}
        for name in _PLAIN_FIELDS:
            value = getattr(self, name)
            if value is not None:
                record[name] = list(value) if type(value) is tuple else value
        record["state"] = self.state.value
        record["retry"] = self.retry.to_wire()
        if self.has_result:
            record["result"] = self.result
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Job:
        values = {name: record[name] for name in _PLAIN_FIELDS if name in record}
        for name in _SHARED_EMPTY:
            if not values.get(name, True):
                del values[name]  # the shared () default, as a job built by parse_enqueue has
        if "result" in record:
            values["result"] = record["result"]
        values["state"] = State(record["state"])
        values["retry"] = parse_policy(record.get("retry"))
        return cls(**values)


@lru_cache(maxsize=64)
def _retry_wire_template(policy: RetryPolicy, *number_types: str) -> dict[str, Any]:
    return policy.to_wire()


def _retry_wire(policy: RetryPolicy) -> dict[str, Any]:
    """``policy.to_wire()``, built once per policy; each caller gets its own copy."""
    # Equal policies can differ in how they print: 2 == 2.0 and True == 1.
    template = _retry_wire_template(
        policy, type(policy.backoff_coefficient).__name__, type(policy.max_attempts).__name__
    )
    return {**template, "non_retryable_errors": list(template["non_retryable_errors"])}


_field_values = attrgetter(*Job.__dataclass_fields__)
"""Every field's value, in ``__init__``'s order (each field is an init parameter);
several times faster than ``copy.copy`` on a slotted dataclass."""

_SHARED_EMPTY = ("tags", "errors")
"""Sequence fields whose empty value is the shared ``()``: most jobs have none."""

_OPTIONAL_TIMES = (
    "enqueued_at",
    "scheduled_at",
    "expires_at",
    "started_at",
    "completed_at",
    "cancelled_at",
    "discarded_at",
    "next_attempt_at",
)
_CLIENT_TIMES = frozenset({"scheduled_at", "expires_at"})
_PLAIN_FIELDS = tuple(
    name for name in Job.__dataclass_fields__ if name not in ("state", "retry", "result")
)
