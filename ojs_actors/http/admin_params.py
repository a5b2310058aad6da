"""Request parsing of the admin API (ojs-admin-api): pages, job filters, the confirmation
of bulk operations. Every bad input is an :class:`~ojs_actors.core.InvalidRequest` (400)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quart import request

from ..core import InvalidRequest, State, format_ms, parse_queue_name, parse_timestamp
from ..system.job_filter import JobFilter
from .wire import query_int

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
MAX_PAGE = 10**7
FILTER_FIELDS = frozenset({"queue", "state", "type", "since", "until"})


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.per_page

    def wire(self, total: int) -> dict[str, Any]:
        return {
            "total": total,
            "page": self.number,
            "per_page": self.per_page,
            "has_more": self.offset + self.per_page < total,
        }


def query_page() -> Page:
    """``page`` (from 1) and ``per_page`` (ojs-admin-api §7.1)."""
    return Page(
        query_int("page", 1, 1, MAX_PAGE),
        query_int("per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE),
    )


def paged(items: list[Any], page: Page) -> list[Any]:
    return items[page.offset : page.offset + page.per_page]


def query_filter() -> JobFilter:
    """The job filter of a listing's query string (``state``, if given, must be
    ``discarded``: the listings served are of the dead letter queue)."""
    return _job_filter({name: request.args[name] for name in FILTER_FIELDS if name in request.args})


def confirmed_filter(body: dict[str, Any]) -> JobFilter:
    """The ``filter`` of a bulk operation's body, once its ``confirm`` is ``true``
    (ojs-admin-api §4, §8: bulk operations need explicit confirmation)."""
    if body.get("confirm") is not True:
        raise InvalidRequest(
            'Bulk operations need explicit confirmation: send "confirm": true.',
            details={"field": "confirm", "received": body.get("confirm")},
        )
    raw = body.get("filter", {})
    if not isinstance(raw, dict):
        raise InvalidRequest("'filter' must be an object.", details={"field": "filter"})
    unknown = sorted(set(raw) - FILTER_FIELDS)
    if unknown:
        # An ignored criterion would widen a destructive operation: refuse it.
        raise InvalidRequest(
            f"Unsupported filter field(s): {', '.join(unknown)}.",
            details={"field": "filter", "unsupported": unknown, "supported": sorted(FILTER_FIELDS)},
        )
    return _job_filter(raw, prefix="filter.")


def purge_filter(body: dict[str, Any]) -> JobFilter:
    """``DELETE /ojs/v1/admin/dead-letter`` (ojs-admin-api §11.3): ``older_than`` and the
    filter fields at the top level, with ``confirm``."""
    criteria = {name: value for name, value in body.items() if name != "confirm"}
    if "older_than" in criteria:
        if "until" in criteria:
            raise InvalidRequest(
                "Give 'older_than' or 'until', not both.", details={"field": "older_than"}
            )
        criteria["until"] = criteria.pop("older_than")
    return confirmed_filter({"confirm": body.get("confirm"), "filter": criteria})


def _job_filter(raw: Mapping[str, Any], prefix: str = "") -> JobFilter:
    state = raw.get("state")
    if state is not None and state != State.DISCARDED.value:
        raise InvalidRequest(
            f"'{prefix}state' must be 'discarded': the dead letter queue is what this "
            "server lists and retries in bulk.",
            details={"field": f"{prefix}state", "received": state, "supported": ["discarded"]},
        )
    job_type = raw.get("type")
    if job_type is not None and (not isinstance(job_type, str) or not job_type):
        raise InvalidRequest(
            f"'{prefix}type' must be a non-empty string.", details={"field": f"{prefix}type"}
        )
    queue = raw.get("queue")
    return JobFilter(
        queue=parse_queue_name(queue, f"{prefix}queue") if queue is not None else None,
        type=job_type,
        since=_time(raw, "since", prefix),
        until=_time(raw, "until", prefix),
    )


def _time(raw: Mapping[str, Any], name: str, prefix: str) -> int | None:
    value = raw.get(name)
    return None if value is None else parse_timestamp(value, f"{prefix}{name}")


def stamp(epoch_ms: int | None) -> str | None:
    return None if epoch_ms is None else format_ms(epoch_ms)
