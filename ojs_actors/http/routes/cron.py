"""``/ojs/v1/cron``: register (upsert), list, get, enable/disable, delete cron entries.

Bodies follow the HTTP schema the conformance suites use (``expression``,
``job_template``; ``{"cron": …}`` and ``{"crons": […]}``); registrations in
ojs-cron §2's shape (``cron``, top-level ``type``/``args``/``options``) are
accepted too.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from ...core import InvalidRequest, format_ms
from ..wire import json_body, ojs_response, ojs_system, pagination, query_int

blueprint = Blueprint("cron", __name__)


def _time(value: int | None) -> str | None:
    return format_ms(value) if value is not None else None


def cron_wire(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": record["name"],
        "expression": record["expression"],
        "timezone": record["timezone"],
        "overlap_policy": record["overlap_policy"],
        "enabled": record["enabled"],
        "description": record.get("description"),
        "job_template": record["job_template"],
        "created_at": _time(record.get("created_at")),
        "updated_at": _time(record.get("updated_at")),
        "next_run_at": _time(record.get("next_run_at")),
        "last_run_at": _time(record.get("last_run_at")),
        "last_job_id": record.get("last_job_id"),
        "run_count": record.get("run_count", 0),
    }


@blueprint.get("/ojs/v1/cron")
async def list_crons() -> Response:
    records = await ojs_system().list_crons()
    enabled = request.args.get("enabled")
    if enabled is not None:
        if enabled not in ("true", "false"):
            raise InvalidRequest(
                "Query parameter 'enabled' must be true or false.",
                details={"parameter": "enabled", "received": enabled},
            )
        records = [record for record in records if record["enabled"] is (enabled == "true")]
    limit = query_int("limit", 50, 1, 1000)
    offset = query_int("offset", 0, 0, 10**9)
    return ojs_response(
        {
            "crons": [cron_wire(record) for record in records[offset : offset + limit]],
            "pagination": pagination(len(records), limit, offset),
        }
    )


@blueprint.post("/ojs/v1/cron")
async def register() -> Response:
    record, created = await ojs_system().register_cron(json_body())
    return ojs_response(
        {"cron": cron_wire(record)},
        201 if created else 200,
        {"Location": f"/ojs/v1/cron/{record['name']}"},
    )


@blueprint.get("/ojs/v1/cron/<name>")
async def info(name: str) -> Response:
    return ojs_response({"cron": cron_wire(await ojs_system().cron_info(name))})


@blueprint.patch("/ojs/v1/cron/<name>")
async def toggle(name: str) -> Response:
    enabled = (json_body()).get("enabled")
    if not isinstance(enabled, bool):
        raise InvalidRequest(
            "'enabled' is required and must be a boolean.",
            details={"field": "enabled", "received": enabled},
        )
    return ojs_response({"cron": cron_wire(await ojs_system().set_cron_enabled(name, enabled))})


@blueprint.delete("/ojs/v1/cron/<name>")
async def delete(name: str) -> Response:
    record = await ojs_system().delete_cron(name)
    return ojs_response({"cron": cron_wire(record), "deleted": True, "name": record["name"]})
