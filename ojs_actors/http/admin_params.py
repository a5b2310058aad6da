"""Request parsing of the admin API (ojs-admin-api): pages, job filters, the confirmation
of bulk operations. Every bad input is an :class:`~ojs_actors.core.InvalidRequest` (400)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quart import request

from ..backends import JobQuery
from ..backends.base import JOB_SORTS
from ..core import InvalidRequest, State, format_ms, parse_queue_name, parse_timestamp
from ..system.job_filter import JobFilter
from .wire import query_int

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
MAX_PAGE = 10**7
FILTER_FIELDS = frozenset({"queue", "state", "type", "since", "until"})
ORDERS = {"asc": False, "desc": True}
"""``order`` of a job listing: whether it is descending."""


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


def query_job_listing(page: Page) -> JobQuery:
    """``GET /ojs/v1/admin/jobs`` (ojs-admin-api §7.1): the filters (``state`` any job
    state), ``sort`` (``created_at``, the default, ``scheduled_at`` or ``priority``) and
    ``order`` (``desc``, the default, or ``asc``), for ``page``."""
    args = request.args
    criteria = _job_filter({name: args[name] for name in FILTER_FIELDS - {"state"} if name in args})
    state = args.get("state")
    states = [member.value for member in State]
    if state is not None and state not in states:
        raise InvalidRequest(
            f"Query parameter 'state' must be one of: {', '.join(states)}.",
            details={"parameter": "state", "received": state, "supported": states},
        )
    sort = args.get("sort", "created_at")
    if sort not in JOB_SORTS:
        raise InvalidRequest(
            f"Query parameter 'sort' must be one of: {', '.join(JOB_SORTS)}.",
            details={"parameter": "sort", "received": sort, "supported": list(JOB_SORTS)},
        )
    order = args.get("order", "desc")
    if order not in ORDERS:
        raise InvalidRequest(
            "Query parameter 'order' must be 'asc' or 'desc'.",
            details={"parameter": "order", "received": order, "supported": list(ORDERS)},
        )
    return JobQuery(
        queue=criteria.queue,
        state=None if state is None else State(state),
        type=criteria.type,
        since=criteria.since,
        until=criteria.until,
        sort=sort,  # one of JOB_SORTS (checked above, which narrows its type)
        descending=ORDERS[order],
        offset=page.offset,
        limit=page.per_page,
    )


PURGE_FIELDS = frozenset({"states", "older_than", "confirm"})
FINISHED = [state.value for state in State if state.terminal]


def queue_purge(body: dict[str, Any]) -> tuple[list[State], int | None]:
    """``DELETE /ojs/v1/admin/queues/{name}/jobs`` (ojs-admin-api §6.5): the ``states`` to
    purge (finished ones: a job still to run is cancelled, not deleted) and ``older_than``,
    once ``confirm`` is ``true``."""
    _confirm(body)
    unknown = sorted(set(body) - PURGE_FIELDS)
    if unknown:  # an ignored criterion would widen a destructive operation
        raise InvalidRequest(
            f"Unsupported field(s): {', '.join(unknown)}.",
            details={"unsupported": unknown, "supported": sorted(PURGE_FIELDS)},
        )
    states = body.get("states")
    if (
        not isinstance(states, list)
        or not states
        or not all(isinstance(state, str) and state in FINISHED for state in states)
    ):
        raise InvalidRequest(
            f"'states' must be a non-empty list of finished states: {', '.join(FINISHED)}.",
            details={"field": "states", "received": states, "supported": FINISHED},
        )
    older_than = body.get("older_than")
    when = None if older_than is None else parse_timestamp(older_than, "older_than")
    return [State(state) for state in dict.fromkeys(states)], when


def _confirm(body: dict[str, Any]) -> None:
    if body.get("confirm") is not True:
        raise InvalidRequest(
            'Bulk operations need explicit confirmation: send "confirm": true.',
            details={"field": "confirm", "received": body.get("confirm")},
        )


def confirmed_filter(body: dict[str, Any]) -> JobFilter:
    """The ``filter`` of a bulk operation's body, once its ``confirm`` is ``true``
    (ojs-admin-api §4, §8: bulk operations need explicit confirmation)."""
    _confirm(body)
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
