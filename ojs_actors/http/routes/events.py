"""``/ojs/v1/events``: lifecycle events by polling (ojs-events §6.4)."""

from __future__ import annotations

from quart import Blueprint, Response, request

from ...backends import EventFilter
from ..wire import csv_param, ojs_response, ojs_system, query_int

blueprint = Blueprint("events", __name__)


@blueprint.get("/ojs/v1/events")
async def events() -> Response:
    limit = query_int("limit", 100, 1, 1000)
    found = await ojs_system().events(
        EventFilter(
            types=csv_param("types"),
            queues=csv_param("queues"),
            job_types=csv_param("job_types"),
            after=request.args.get("after") or None,
            limit=limit + 1,
        )
    )
    page = found[:limit]
    return ojs_response(
        {"events": page, "cursor": page[-1]["id"] if page else None, "has_more": len(found) > limit}
    )
