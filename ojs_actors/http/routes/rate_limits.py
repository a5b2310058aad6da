"""``/ojs/v1/rate-limits``: the state of rate-limit keys and their overrides
(ojs-rate-limiting §10.1–§10.3); ``/ojs/v1/admin/queues/{name}/rate-limit``: a queue's
own limit (§7.2)."""

from __future__ import annotations

from quart import Blueprint, Response

from ..wire import json_body, ojs_response, ojs_system, pagination, query_int

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


@blueprint.put("/ojs/v1/rate-limits/<key>")
async def override(key: str) -> Response:
    return ojs_response(await ojs_system().limits.override_rate_limit(key, json_body()))


@blueprint.delete("/ojs/v1/rate-limits/<key>")
async def clear_override(key: str) -> Response:
    return ojs_response(await ojs_system().limits.clear_rate_limit_override(key))


@blueprint.put("/ojs/v1/admin/queues/<name>/rate-limit")
async def set_queue_limit(name: str) -> Response:
    return ojs_response(await ojs_system().limits.set_queue_rate_limit(name, json_body()))


@blueprint.get("/ojs/v1/admin/queues/<name>/rate-limit")
async def queue_limit(name: str) -> Response:
    return ojs_response(await ojs_system().limits.queue_rate_limit(name))


@blueprint.delete("/ojs/v1/admin/queues/<name>/rate-limit")
async def clear_queue_limit(name: str) -> Response:
    return ojs_response(await ojs_system().limits.clear_queue_rate_limit(name))
