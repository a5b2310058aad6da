"""Cron registrations (ojs-cron): validation, fire times and the overlap decision. Pure.

Fire times are computed on local wall-clock time in the entry's IANA zone, then
mapped to instants, which gives the DST rules of ojs-cron §5.2:

* a wall-clock time that does not exist (spring forward) does not fire;
* a wall-clock time that occurs twice (fall back) fires once, at its first
  occurrence. This holds for every slot, so a sub-hourly entry in such a zone is
  silent during the second pass of the repeated hour (use UTC to avoid that).

``@every <duration>`` (ojs-cron §4.1) fires on a fixed grid anchored at the
time the expression was registered: anchor + k * interval, k >= 1.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from .errors import InvalidRequest, OJSError
from .ids import new_id
from .states import State
from .timefmt import format_ms
from .validation import parse_enqueue

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9\-.]*$")
MAX_NAME_LENGTH = 255
MIN_EVERY_MS = 1000
"""ojs-cron §7.3: schedules are never evaluated more often than once per second."""
MAX_SCAN = 100_000
"""Bound on the wall-clock candidates one look-up examines (DST skips included)."""

SPECIALS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES = re.compile(r"[A-Za-z]{3}")
# Characters each field may hold once month/day names are removed (ojs-cron §3.1, §3.3).
_FIELD_CHARS = {
    "second": "0123456789*,-/",
    "minute": "0123456789*,-/",
    "hour": "0123456789*,-/",
    "day of month": "0123456789*,-/LW",
    "month": "0123456789*,-/",
    "day of week": "0123456789*,-/L#",
}
_FIVE = ("minute", "hour", "day of month", "month", "day of week")
_SIX = ("second", *_FIVE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_FIXED_OFFSET_ZONE = re.compile(r"^Etc/GMT[+-]\d+$")
_UTC_ZONES = frozenset({"UTC", "GMT", "Etc/UTC", "Etc/GMT"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class OverlapPolicy(StrEnum):
    SKIP = "skip"
    ALLOW = "allow"
    CANCEL_PREVIOUS = "cancel_previous"
    ENQUEUE = "enqueue"


_POLICY_ALIASES = {"cancel": OverlapPolicy.CANCEL_PREVIOUS}  # the openapi enum's spelling


class Decision(StrEnum):
    FIRE = "fire"
    SKIP = "skip"
    CANCEL_AND_FIRE = "cancel_and_fire"
    HOLD = "hold"
    """Enqueue as ``pending``; released when the previous run is over (policy ``enqueue``)."""


def decide_overlap(policy: OverlapPolicy, previous: State | None, held: int = 0) -> Decision:
    """What a due slot does, given the state of the entry's previous job (``None``: none or
    gone) and how many jobs are held back behind it. A run is over once its job is terminal:
    an ``available``, ``scheduled`` or ``retryable`` job is still a run in progress."""
    running = previous is not None and not previous.terminal
    if policy is OverlapPolicy.ALLOW:
        return Decision.FIRE
    if policy is OverlapPolicy.ENQUEUE:
        return Decision.HOLD if running or held else Decision.FIRE
    if not running:
        return Decision.FIRE
    return Decision.SKIP if policy is OverlapPolicy.SKIP else Decision.CANCEL_AND_FIRE


# -- schedules -----------------------------------------------------------------------


def _invalid(field: str, message: str, received: object) -> InvalidRequest:
    return InvalidRequest(f"'{field}' {message}.", details={"field": field, "received": received})


def _to_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(epoch_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=epoch_ms)


def parse_timezone(value: object) -> ZoneInfo:
    """An IANA zone name; fixed offsets and abbreviations are refused (ojs-cron §5.1)."""
    if not isinstance(value, str) or not value:
        raise _invalid("timezone", "must be a non-empty IANA timezone name", value)
    refused = _invalid(
        "timezone",
        "must be an IANA timezone name such as UTC or America/New_York "
        "(fixed offsets and abbreviations are not accepted)",
        value,
    )
    if value not in _UTC_ZONES and ("/" not in value or _FIXED_OFFSET_ZONE.match(value)):
        raise refused
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise refused from None


def _parse_every(text: str, expression: str) -> int:
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS_MS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise _invalid(
            "expression", "must use a duration such as 30s, 5m or 1h30m after '@every'", expression
        )
    every_ms = round(total)
    if every_ms < MIN_EVERY_MS:
        raise _invalid(
            "expression",
            "must not fire more often than once per second (ojs-cron §7.3)",
            expression,
        )
    return every_ms


def _strip_names(text: str, known: tuple[str, ...]) -> str:
    return _NAMES.sub(lambda m: "" if m.group(0).upper() in known else m.group(0), text)


def _check_fields(fields: list[str], expression: str) -> str:
    """Refuse what croniter would accept beyond ojs-cron §3 (``H``, ``R``, ``?``); return
    the fields in croniter's spelling."""
    names = _SIX if len(fields) == 6 else _FIVE
    checked: list[str] = []
    for name, text in zip(names, fields, strict=True):
        known = _MONTHS if name == "month" else _DAYS if name == "day of week" else ()
        bare = _strip_names(text, known)
        if any(char not in _FIELD_CHARS[name] for char in bare):
            raise _invalid("expression", f"has an invalid {name} field '{text}'", expression)
        if name == "day of week":  # Quartz's "5L" (last Friday) is croniter's "L5"
            text = re.sub(r"(?<![\w#])([0-7]|[A-Za-z]{3})L\b", r"L\1", text)
        checked.append(text)
    return " ".join(checked)


class Schedule:
    """A validated cron expression in a zone, answering "when does it fire next"."""

    __slots__ = ("expression", "timezone", "zone", "every_ms", "_cron", "_seconds")

    def __init__(self, expression: object, timezone: object = "UTC") -> None:
        if not isinstance(expression, str) or not expression.strip():
            raise _invalid("expression", "must be a non-empty cron expression", expression)
        self.expression = expression
        self.zone = parse_timezone(timezone)
        self.timezone: str = self.zone.key
        self.every_ms: int | None = None
        self._cron = ""
        self._seconds = False
        text = expression.strip()
        lowered = text.lower()
        if lowered.startswith("@every"):
            self.every_ms = _parse_every(lowered.removeprefix("@every").strip(), expression)
            return
        if text.startswith("@"):
            if lowered not in SPECIALS:
                raise _invalid(
                    "expression",
                    f"is not a known special expression (one of {', '.join(SPECIALS)}, @every)",
                    expression,
                )
            text = SPECIALS[lowered]
        fields = text.split()
        if len(fields) not in (5, 6):
            raise _invalid(
                "expression",
                f"must have 5 fields (or 6, with seconds first), not {len(fields)}",
                expression,
            )
        self._cron = _check_fields(fields, expression)
        self._seconds = len(fields) == 6
        try:
            valid = croniter.is_valid(self._cron, second_at_beginning=self._seconds)
        except (CroniterBadCronError, ValueError, KeyError):
            valid = False
        if not valid:
            raise _invalid(
                "expression", "is not a valid cron expression (see ojs-cron §3)", expression
            )

    def __repr__(self) -> str:
        return f"Schedule({self.expression!r}, {self.timezone!r})"

    def _iter(self, start: datetime) -> Any:
        return croniter(self._cron, start, second_at_beginning=self._seconds)

    def _exists(self, wall: datetime) -> bool:
        """Whether a naive local wall-clock time exists in the zone (not in a DST gap)."""
        there = wall.replace(tzinfo=self.zone)
        return there.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) == wall

    def _instant(self, wall: datetime) -> int:
        return _to_ms(wall.replace(tzinfo=self.zone, fold=0))  # fold 0: the first occurrence

    def next_after(self, after_ms: int, anchor_ms: int = 0) -> int | None:
        """The first fire time strictly after ``after_ms`` (``None``: it never fires again).
        ``anchor_ms`` is the grid origin of ``@every``."""
        if self.every_ms is not None:
            steps = max(1, (after_ms - anchor_ms) // self.every_ms + 1)
            return anchor_ms + steps * self.every_ms
        candidates = self._iter(_from_ms(after_ms).astimezone(self.zone).replace(tzinfo=None))
        try:
            for _ in range(MAX_SCAN):
                wall = candidates.get_next(datetime)
                if not self._exists(wall):
                    continue  # spring forward: this wall-clock time never happens
                at = self._instant(wall)
                if at > after_ms:  # (not: its first occurrence passed before the repeat)
                    return at
        except CroniterBadDateError:
            pass
        return None

    def latest_due(self, now_ms: int, after_ms: int, anchor_ms: int = 0) -> int | None:
        """The latest fire time in ``(after_ms, now_ms]``, if any: the one occurrence that
        fires after missed ones (ojs-cron §7.3 allows at most one catch-up)."""
        if now_ms <= after_ms:
            return None
        if self.every_ms is not None:
            steps = (now_ms - anchor_ms) // self.every_ms
            due = anchor_ms + steps * self.every_ms
            return due if steps >= 1 and due > after_ms else None
        # Start from the wall time ``now`` has at the zone's earlier offset: inside a
        # repeated hour, wall times up to there already had their first occurrence.
        local = _from_ms(now_ms).astimezone(self.zone)
        first_offset = local.replace(fold=0).utcoffset() or timedelta(0)
        start = (_from_ms(now_ms) + first_offset).replace(tzinfo=None)
        candidates = self._iter(start + timedelta(microseconds=1))
        try:
            for _ in range(MAX_SCAN):
                wall = candidates.get_prev(datetime)
                if not self._exists(wall):
                    continue
                at = self._instant(wall)
                if at > now_ms:
                    continue
                return at if at > after_ms else None
        except CroniterBadDateError:
            pass
        return None

    def skipped_between(self, after_ms: int, until_ms: int) -> list[str]:
        """Local wall-clock slots in ``(after_ms, until_ms]`` that a spring-forward gap
        removed (for ``cron.skipped`` with reason ``dst_skip``), as ISO local times."""
        if self.every_ms is not None or until_ms <= after_ms:
            return []
        start = _from_ms(after_ms).astimezone(self.zone)
        end = _from_ms(until_ms).astimezone(self.zone)
        if start.utcoffset() == end.utcoffset():
            return []  # no transition between the two (the common case: nothing to scan)
        end_wall = end.replace(tzinfo=None)
        candidates = self._iter(start.replace(tzinfo=None))
        skipped: list[str] = []
        try:
            for _ in range(MAX_SCAN):
                wall = candidates.get_next(datetime)
                if wall > end_wall:
                    break
                if not self._exists(wall):
                    skipped.append(wall.isoformat())
        except CroniterBadDateError:
            pass
        return skipped


# -- registrations ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CronSpec:
    """What a client registers: the definition, without the system-managed bookkeeping."""

    name: str
    schedule: Schedule
    job_template: dict[str, Any]
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    enabled: bool = True
    description: str | None = None

    @property
    def expression(self) -> str:
        return self.schedule.expression

    @property
    def timezone(self) -> str:
        return self.schedule.timezone

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expression": self.expression,
            "timezone": self.timezone,
            "job_template": copy.deepcopy(self.job_template),
            "overlap_policy": self.overlap_policy.value,
            "enabled": self.enabled,
            "description": self.description,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> CronSpec:
        return parse_cron(record, 0)


def parse_cron_name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid("name", "is required and must be a non-empty string", value)
    if len(value) > MAX_NAME_LENGTH:
        raise _invalid("name", f"must be at most {MAX_NAME_LENGTH} characters", len(value))
    if not NAME_PATTERN.fullmatch(value):
        raise _invalid(
            "name",
            "must be lowercase letters, digits, '-' and '.', starting with a letter or digit",
            value,
        )
    return value


def parse_cron(body: object, now_ms: int) -> CronSpec:
    """Validate a registration. Both shapes are accepted: the HTTP schema's
    ``expression`` + ``job_template``, and ojs-cron §2's ``cron`` + top-level
    ``type``/``args``/``options``/``meta``. System-managed fields are ignored."""
    if not isinstance(body, dict):
        raise InvalidRequest(
            "The cron registration must be a JSON object.",
            details={"received": type(body).__name__},
        )
    name = parse_cron_name(body.get("name"))
    expression = body.get("expression", body.get("cron"))
    if expression is None:
        raise _invalid("expression", "is required", None)
    schedule = Schedule(expression, "UTC" if body.get("timezone") is None else body["timezone"])

    if "job_template" in body:
        template = body["job_template"]
        field = "job_template"
        if not isinstance(template, dict):
            raise _invalid(field, "must be an object", type(template).__name__)
    else:
        template = {key: body[key] for key in ("type", "args", "options", "meta") if key in body}
        field = "type"
        if "type" not in template:
            raise _invalid("job_template", "is required (or a top-level 'type')", None)
    if "id" in template:
        raise _invalid(f"{field}.id", "must not be set: every occurrence is a new job", None)
    for key in ("options", "meta"):
        if template.get(key) is not None and not isinstance(template[key], dict):
            raise _invalid(f"{field}.{key}", "must be an object", type(template[key]).__name__)
    template = {**copy.deepcopy(template), "args": copy.deepcopy(template.get("args", []))}
    try:
        parse_enqueue(job_request(name, template, now_ms, new_id()), now_ms)
    except OJSError as error:
        raise type(error)(
            f"Invalid job template: {error.message}", details=error.details, hint=error.hint
        ) from None

    raw_policy = body.get("overlap_policy")
    if raw_policy is None:
        policy = OverlapPolicy.SKIP
    elif isinstance(raw_policy, str) and raw_policy in _POLICY_ALIASES:
        policy = _POLICY_ALIASES[raw_policy]
    else:
        try:
            policy = OverlapPolicy(raw_policy)
        except ValueError:
            raise _invalid(
                "overlap_policy",
                f"must be one of {', '.join(p.value for p in OverlapPolicy)}",
                raw_policy,
            ) from None

    enabled = body.get("enabled", True)
    if enabled is None:
        enabled = True
    if not isinstance(enabled, bool):
        raise _invalid("enabled", "must be a boolean", enabled)
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise _invalid("description", "must be a string", type(description).__name__)
    return CronSpec(name, schedule, template, policy, enabled, description)


def job_request(
    name: str, template: dict[str, Any], slot_ms: int, job_id: str, *, hold: bool = False
) -> dict[str, Any]:
    """The enqueue request of one occurrence: the template, a fresh id, and the
    correlation of ojs-cron §6.3 (``cron_name``, ``cron_triggered_at``) in ``meta``."""
    request = copy.deepcopy(template)
    request["id"] = job_id
    request.setdefault("args", [])
    meta = request.get("meta")
    request["meta"] = {
        **(meta if isinstance(meta, dict) else {}),
        "cron_name": name,
        "cron_triggered_at": format_ms(slot_ms),
    }
    if hold:
        options = request.get("options")
        request["options"] = {**(options if isinstance(options, dict) else {}), "pending": True}
    return request
