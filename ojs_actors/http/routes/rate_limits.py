"""``/ojs/v1/rate-limits``: the state of rate-limit keys (ojs-rate-limiting §10.1, §10.3)."""

from __future__ import annotations

from quart import Blueprint, Response

from ..wire import ojs_response, ojs_system, pagination, query_int

blueprint = Blueprint("rate_limits", __name__)


@blueprint.get("/ojs/v1/rate-limits")
async def list_keys() -> Response:
    items = await ojs_system().limits.rate_limits()
    limit = query_int("limit", 50, 1, 1000)
    offset = query_int("offset", 0, 0, 10**9)
    return ojs_response(
        {
            "items": items[offset : offset + limit],
            "pagination": pagination(len(items), limit, offset),
        }
    )


@blueprint.get("/ojs/v1/rate-limits/<key>")
async def inspect(key: str) -> Response:
    return ojs_response(await ojs_system().limits.rate_limit(key))
