"""Unique jobs (ojs-unique-jobs.md): policy validation and the uniqueness key. Pure.

The backend enforces the policy atomically at insert time (see
:meth:`~ojs_actors.backends.Backend.insert_jobs`), using :func:`policy_of` and
:func:`is_conflict` so every backend decides conflicts the same way.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .errors import Duplicate, InvalidRequest
from .states import State
from .timefmt import parse_duration_ms

if TYPE_CHECKING:
    from .job import Job

DIMENSIONS = ("type", "queue", "args", "meta")
DEFAULT_STATES = frozenset(
    {State.AVAILABLE, State.ACTIVE, State.SCHEDULED, State.RETRYABLE, State.PENDING}
)


class OnConflict(StrEnum):
    REJECT = "reject"
    REPLACE = "replace"
    REPLACE_EXCEPT_SCHEDULE = "replace_except_schedule"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class UniquePolicy:
    keys: tuple[str, ...] = ("type",)
    args_keys: tuple[str, ...] | None = None
    meta_keys: tuple[str, ...] | None = None
    period_ms: int | None = None
    states: frozenset[State] = DEFAULT_STATES
    on_conflict: OnConflict = OnConflict.REJECT


def _bad(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"'unique.{field}' {message}.", details={"field": f"unique.{field}"})


def _strings(raw: dict[str, Any], name: str) -> tuple[str, ...] | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _bad(name, "must be an array of strings")
    return tuple(value)


def parse_unique(raw: object, args: list[Any], meta: dict[str, Any]) -> UniquePolicy:
    """Validate a ``unique`` object against the job it belongs to (ojs-unique-jobs §2.2)."""
    if not isinstance(raw, dict):
        raise InvalidRequest("'unique' must be an object.", details={"field": "unique"})
    keys = _strings(raw, "keys") or ("type",)
    unknown = [key for key in keys if key not in DIMENSIONS]
    if unknown:
        raise _bad("keys", f"may only contain {', '.join(DIMENSIONS)} (got {', '.join(unknown)})")
    args_keys = _strings(raw, "args_keys")
    meta_keys = _strings(raw, "meta_keys")
    if "meta" in keys and not meta_keys:
        raise _bad("meta_keys", "is required when 'meta' is one of the keys")
    if args_keys is not None and "args" in keys:
        present = {key for item in args if isinstance(item, dict) for key in item}
        missing = [key for key in args_keys if key not in present]
        if missing:
            raise _bad("args_keys", f"names keys the job's args do not have: {', '.join(missing)}")
    period = raw.get("period")
    period_ms = None if period is None else parse_duration_ms(period, "unique.period")
    states = DEFAULT_STATES
    if raw.get("states") is not None:
        names = _strings(raw, "states") or ()
        try:
            states = frozenset(State(name) for name in names)
        except ValueError:
            raise _bad("states", "may only contain job states") from None
    try:
        on_conflict = OnConflict(raw.get("on_conflict", OnConflict.REJECT.value))
    except ValueError:
        raise _bad(
            "on_conflict", "must be one of reject, replace, replace_except_schedule, ignore"
        ) from None
    unique_keys = tuple(dict.fromkeys(("type", *keys)))
    return UniquePolicy(unique_keys, args_keys, meta_keys, period_ms, states, on_conflict)


def _nfc(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [_nfc(item) for item in value]
    if isinstance(value, dict):
        return {_nfc(key): _nfc(item) for key, item in value.items()}
    return value


def unique_key(
    policy: UniquePolicy, job_type: str, queue: str, args: list[Any], meta: dict[str, Any]
) -> str:
    """SHA-256 over the canonical JSON of the selected dimensions (ojs-unique-jobs §4)."""
    dimensions: dict[str, Any] = {"type": job_type}
    if "queue" in policy.keys:
        dimensions["queue"] = queue
    if "args" in policy.keys:
        if policy.args_keys is None:
            dimensions["args"] = args
        else:
            selected: dict[str, Any] = {}
            for item in args:
                if isinstance(item, dict):
                    selected.update({k: item[k] for k in policy.args_keys if k in item})
            dimensions["args"] = selected
    if "meta" in policy.keys and policy.meta_keys:
        dimensions["meta"] = {k: meta.get(k) for k in policy.meta_keys}
    canonical = json.dumps(_nfc(dimensions), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def is_conflict(
    policy: UniquePolicy, existing_state: State, existing_created_at: int, now: int
) -> bool:
    """An existing job with the same key blocks a new one: in a checked state, within the period."""
    if existing_state not in policy.states:
        return False
    return policy.period_ms is None or now < existing_created_at + policy.period_ms


def policy_of(job: Job) -> UniquePolicy | None:
    """The (already validated) unique policy a stored or submitted job carries."""
    if job.unique is None:
        return None
    return parse_unique(job.unique, job.args, job.meta)


def conflict_error(existing: Job, new: Job) -> Duplicate:
    reason = (
        "it is active and cannot be replaced"
        if existing.state is State.ACTIVE
        and new.unique is not None
        and new.unique.get("on_conflict", "reject") != "reject"
        else f"it is {existing.state.value}"
    )
    return Duplicate(
        f"A job with the same unique key already exists ({existing.id}; {reason}).",
        details={
            "existing_job_id": existing.id,
            "existing_state": existing.state.value,
            "unique_key": new.unique_key,
        },
    )
