"""``/ojs/v1/webhooks``: subscriptions (create, list, get, update, delete, test, rotate
the secret) and the delivery log (list, get, retry), as ojs-webhooks §10 lists them.

Bodies follow the conformance suite: one subscription answers as ``{"subscription": …}``
and the list as ``{"subscriptions": […]}`` (ojs-webhooks §6.1 shows the bare object).
The secret shows only in the answers of create and rotate-secret.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from ...core import format_ms
from ..wire import json_body, ojs_response, ojs_system, pagination, query_int

blueprint = Blueprint("webhooks", __name__)
SUBSCRIPTIONS = "/ojs/v1/webhooks/subscriptions"
DELIVERIES = "/ojs/v1/webhooks/deliveries"


def _time(value: int | None) -> str | None:
    return format_ms(value) if value is not None else None


def subscription_wire(record: dict[str, Any]) -> dict[str, Any]:
    wire = {
        "id": record["id"],
        "url": record["url"],
        "events": record["events"],
        "filter": record.get("filter") or {},
        "active": record["active"],
        "metadata": record.get("metadata") or {},
        "created_at": _time(record.get("created_at")),
        "updated_at": _time(record.get("updated_at")),
    }
    if "tenant_id" in record:
        wire["tenant_id"] = record["tenant_id"]
    if "secret" in record:
        wire["secret"] = record["secret"]
    return wire


def delivery_wire(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record["id"],
        "subscription_id": record["subscription_id"],
        "event_id": record["event_id"],
        "event_type": record.get("event_type"),
        "state": record["state"],
        "attempts": record["attempts"],
        "next_attempt_at": _time(record.get("next_attempt_at")),
        "last_status_code": record.get("last_status_code"),
        "last_error": record.get("last_error"),
        "created_at": _time(record.get("created_at")),
        "updated_at": _time(record.get("updated_at")),
        "history": [
            {**attempt, "at": _time(attempt.get("at"))} for attempt in record.get("history", [])
        ],
        "event": record["event"],
    }


@blueprint.post(SUBSCRIPTIONS)
async def create() -> Response:
    record = await ojs_system().create_webhook_subscription(json_body())
    return ojs_response(
        {"subscription": subscription_wire(record)},
        201,
        {"Location": f"{SUBSCRIPTIONS}/{record['id']}"},
    )


@blueprint.get(SUBSCRIPTIONS)
async def list_subscriptions() -> Response:
    records = await ojs_system().list_webhook_subscriptions()
    limit = query_int("limit", 50, 1, 1000)
    offset = query_int("offset", 0, 0, 10**9)
    return ojs_response(
        {
            "subscriptions": [subscription_wire(r) for r in records[offset : offset + limit]],
            "pagination": pagination(len(records), limit, offset),
        }
    )


@blueprint.get(f"{SUBSCRIPTIONS}/<subscription_id>")
async def info(subscription_id: str) -> Response:
    record = await ojs_system().webhook_subscription_info(subscription_id)
    return ojs_response({"subscription": subscription_wire(record)})


@blueprint.patch(f"{SUBSCRIPTIONS}/<subscription_id>")
async def update(subscription_id: str) -> Response:
    record = await ojs_system().update_webhook_subscription(subscription_id, json_body())
    return ojs_response({"subscription": subscription_wire(record)})


@blueprint.delete(f"{SUBSCRIPTIONS}/<subscription_id>")
async def delete(subscription_id: str) -> Response:
    record = await ojs_system().delete_webhook_subscription(subscription_id)
    return ojs_response({"subscription": subscription_wire(record), "deleted": True})


@blueprint.post(f"{SUBSCRIPTIONS}/<subscription_id>/test")
async def test(subscription_id: str) -> Response:
    return ojs_response(await ojs_system().test_webhook_subscription(subscription_id))


@blueprint.post(f"{SUBSCRIPTIONS}/<subscription_id>/rotate-secret")
async def rotate_secret(subscription_id: str) -> Response:
    record = await ojs_system().rotate_webhook_secret(subscription_id)
    return ojs_response({"subscription": subscription_wire(record)})


@blueprint.get(DELIVERIES)
async def deliveries() -> Response:
    limit = query_int("limit", 50, 1, 1000)
    offset = query_int("offset", 0, 0, 10**9)
    records, total = await ojs_system().webhook_deliveries(
        request.args.get("subscription_id"), request.args.get("state"), limit, offset
    )
    return ojs_response(
        {
            "deliveries": [delivery_wire(record) for record in records],
            "pagination": pagination(total, limit, offset),
        }
    )


@blueprint.get(f"{DELIVERIES}/<delivery_id>")
async def delivery(delivery_id: str) -> Response:
    record = await ojs_system().webhook_delivery_info(delivery_id)
    return ojs_response({"delivery": delivery_wire(record)})


@blueprint.post(f"{DELIVERIES}/<delivery_id>/retry")
async def retry(delivery_id: str) -> Response:
    record = await ojs_system().retry_webhook_delivery(delivery_id)
    return ojs_response({"delivery": delivery_wire(record)})
