"""Webhook subscriptions and deliveries (ojs-webhooks): parsing, matching, signing and
the retry schedule. Pure: no I/O, no clocks (times are passed in, epoch ms).

A subscription is stored as a plain dict (the snapshot ``webhook-sub:<id>``)::

    {"id", "url", "events", "filter", "active", "secret", "metadata", "tenant_id",
     "previous_secret", "previous_secret_until", "created_at", "updated_at"}

``tenant_id`` is the tenant it was created for (ojs-webhooks §9.3), absent for an
operator's subscription (every tenant's events).

A delivery (``webhook-delivery:<id>``) is one event for one subscription; its id is a
function of the two, so the same event read twice makes the same delivery (at least
once, never twice the record), and it stays the same across retries (ojs-webhooks §7.5).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as secrets_module
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from .errors import InvalidRequest
from .events import envelope, new_event_id
from .ids import new_id
from .job import TENANT_SHARD_MARK
from .timefmt import format_ms

RETRY_DELAYS_MS = (
    0,
    30_000,
    120_000,
    600_000,
    3_600_000,
    14_400_000,
    43_200_000,
    86_400_000,
)
"""ojs-webhooks §7.2: the wait before attempt 1, 2, … 8 (about 41 hours in all)."""
MAX_ATTEMPTS = len(RETRY_DELAYS_MS)
ROTATION_GRACE_MS = 24 * 3_600_000
"""ojs-webhooks §8.3: deliveries carry the old secret's signature too for this long."""
MAX_EVENTS = 100
MAX_URL_LENGTH = 2048
UPDATABLE = ("url", "events", "filter", "active", "metadata")


def _invalid(message: str, field: str, received: object = None) -> InvalidRequest:
    return InvalidRequest(message, details={"field": field, "received": received})


def host_allowed(host: str, allowed_hosts: Sequence[str]) -> bool:
    """Whether ``host`` is on the allow-list (empty: every host). An entry ``*.example.com``
    allows the subdomains of ``example.com``; any other entry, that host exactly."""
    if not allowed_hosts:
        return True
    host = host.lower().rstrip(".")
    for entry in allowed_hosts:
        entry = entry.lower().strip().rstrip(".")
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
        if host == entry:
            return True
    return False


def check_url(url: object, allowed_hosts: Sequence[str] = ()) -> str:
    """A subscription's target: an absolute ``http`` or ``https`` URL to an allowed host."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise _invalid("'url' must be an http or https URL.", "url", url)
    try:
        if any(char.isspace() or not char.isprintable() for char in url):
            raise ValueError("blanks or control characters")
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises on a bad port)
        if host:
            host.encode("idna")  # raises on a name no DNS could hold
    except (ValueError, UnicodeError):
        raise _invalid("'url' is not a valid URL.", "url", url) from None
    if parts.scheme not in ("http", "https") or not host:
        raise _invalid("'url' must be an absolute http or https URL.", "url", url)
    if not host_allowed(host, allowed_hosts):
        raise InvalidRequest(
            f"Webhook host '{host}' is not in OJS_WEBHOOK_ALLOWED_HOSTS.",
            details={"field": "url", "received": url, "host": host},
        )
    return url


def _events(value: object) -> list[str]:
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_EVENTS
        or not all(isinstance(kind, str) and kind for kind in value)
    ):
        raise _invalid(
            f"'events' must be a non-empty list of at most {MAX_EVENTS} event types.",
            "events",
            value,
        )
    return list(dict.fromkeys(value))


def _filter(value: object) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid("'filter' must be an object.", "filter", value)
    parsed: dict[str, list[str]] = {}
    for key, entries in value.items():
        if key not in ("queues", "job_types"):
            raise _invalid("'filter' takes only 'queues' and 'job_types'.", f"filter.{key}", None)
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise _invalid(f"'filter.{key}' must be a list of strings.", f"filter.{key}", entries)
        parsed[key] = list(entries)
    return parsed


def _metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid("'metadata' must be an object.", "metadata", value)
    return dict(value)


def _active(value: object) -> bool:
    if not isinstance(value, bool):
        raise _invalid("'active' must be a boolean.", "active", value)
    return value


def new_secret() -> str:
    return f"whsec_{secrets_module.token_hex(24)}"


def parse_subscription(
    body: dict[str, Any], now: int, allowed_hosts: Sequence[str] = (), tenant: str | None = None
) -> dict[str, Any]:
    """A new subscription from a create request (ojs-webhooks §6.1), of ``tenant`` if one
    is given. A ``secret`` given by the client is kept (the conformance suite sends one);
    else one is made."""
    secret = body.get("secret")
    if secret is None:
        secret = new_secret()
    elif not isinstance(secret, str) or not secret:
        raise _invalid("'secret' must be a non-empty string.", "secret", None)
    record = {
        "id": f"sub_{new_id()}",
        "url": check_url(body.get("url"), allowed_hosts),
        "events": _events(body.get("events")),
        "filter": _filter(body.get("filter")),
        "active": _active(body.get("active", True)),
        "metadata": _metadata(body.get("metadata")),
        "secret": secret,
        "created_at": now,
        "updated_at": now,
        "active_since": now,
    }
    if tenant is not None:
        record["tenant_id"] = tenant
    return record


def apply_update(
    record: dict[str, Any], body: dict[str, Any], now: int, allowed_hosts: Sequence[str] = ()
) -> dict[str, Any]:
    """The subscription after a PATCH (ojs-webhooks §6.4): only the fields given change."""
    unknown = sorted(set(body) - set(UPDATABLE))
    if unknown:
        raise InvalidRequest(
            f"Field '{unknown[0]}' cannot be updated.",
            details={"field": unknown[0], "updatable": list(UPDATABLE)},
        )
    updated = dict(record)
    parsers = {
        "url": lambda value: check_url(value, allowed_hosts),
        "events": _events,
        "filter": _filter,
        "active": _active,
        "metadata": _metadata,
    }
    for field, value in body.items():
        updated[field] = parsers[field](value)
    updated["updated_at"] = now
    if updated["active"] and not record.get("active"):
        updated["active_since"] = now  # switched back on: no events of the pause
    return updated


def rotate_secret(record: dict[str, Any], now: int) -> dict[str, Any]:
    """A new secret; the old one keeps signing too for :data:`ROTATION_GRACE_MS`."""
    rotated = dict(record)
    rotated["previous_secret"] = record["secret"]
    rotated["previous_secret_until"] = now + ROTATION_GRACE_MS
    rotated["secret"] = new_secret()
    rotated["updated_at"] = now
    return rotated


def _type_matches(pattern: str, kind: str) -> bool:
    if pattern == "*" or pattern == kind:
        return True
    return pattern.endswith(".*") and kind.startswith(pattern[:-1])


def matches(subscription: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether ``event`` goes to ``subscription`` (ojs-webhooks §5.2): one of its types
    (``*`` and ``prefix.*`` wildcards) and, with a filter, its queues and job types."""
    kind = event.get("type", "")
    if not any(_type_matches(pattern, kind) for pattern in subscription["events"]):
        return False
    data = event.get("data") or {}
    criteria = subscription.get("filter") or {}
    queues = criteria.get("queues")
    queue = data.get("queue")
    if queues and queue not in queues:
        # A tenant's queue is stored as "<queue>..t.<tenant>": its own name matches too.
        if not isinstance(queue, str) or queue.partition(TENANT_SHARD_MARK)[0] not in queues:
            return False
    job_types = criteria.get("job_types")
    return not job_types or data.get("job_type") in job_types


def wants(subscription: dict[str, Any], event_time_ms: int) -> bool:
    """Whether an event of that time is the subscription's: one since it was created or
    last switched on (not the outbox's history, nor what happened while it was off)."""
    since: int = subscription.get("active_since", subscription.get("created_at", 0))
    return bool(subscription.get("active")) and event_time_ms >= since


def delivery_id(subscription_id: str, event_id: str) -> str:
    """The delivery of one event to one subscription (stable across reads and retries)."""
    digest = hashlib.sha256(f"{subscription_id}\n{event_id}".encode()).hexdigest()
    return f"del_{digest[:32]}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """ojs-webhooks §8.1: hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    return hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()


def signature_header(subscription: dict[str, Any], timestamp: int, body: bytes, now: int) -> str:
    """``X-OJS-Signature``: ``sha256=<hex>``, followed during a rotation by the old
    secret's (comma-separated, ojs-webhooks §8.3)."""
    values = [f"sha256={signature(subscription['secret'], timestamp, body)}"]
    previous = subscription.get("previous_secret")
    if previous and now < subscription.get("previous_secret_until", 0):
        values.append(f"sha256={signature(previous, timestamp, body)}")
    return ",".join(values)


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """A receiver's check (ojs-webhooks §8.2, without the time window): one of the
    header's signatures is ``secret``'s."""
    try:
        expected = signature(secret, int(timestamp), body)
    except ValueError:
        return False
    return any(
        hmac.compare_digest(expected, part.strip().removeprefix("sha256="))
        for part in header.split(",")
    )


def retry_delay_ms(attempts: int) -> int | None:
    """The wait before the next attempt after ``attempts`` failed ones, ``None`` when
    they are exhausted (a dead delivery)."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return RETRY_DELAYS_MS[attempts]


HISTORY_LIMIT = 10
"""Attempts kept in a delivery's record (the newest)."""


def new_delivery(subscription_id: str, event: dict[str, Any], now: int) -> dict[str, Any]:
    """A pending delivery of ``event`` to a subscription, due now."""
    return {
        "id": delivery_id(subscription_id, event["id"]),
        "subscription_id": subscription_id,
        "event_id": event["id"],
        "event_type": event.get("type"),
        "event": event,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
        "last_status_code": None,
        "last_error": None,
        "history": [],
    }


def retryable_status(status_code: int | None) -> bool:
    """ojs-webhooks §7.1: no answer (timeout, connection error), 429 and 5xx are tried
    again; any other status that is no success (4xx, a redirect too many) is final."""
    return status_code is None or status_code == 429 or status_code >= 500


def after_attempt(
    record: dict[str, Any],
    now: int,
    *,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    retry_after_ms: int | None = None,
    final: bool = False,
) -> dict[str, Any]:
    """The delivery after one attempt: ``delivered`` on a 2xx, else ``pending`` again at
    the next step of the schedule (no sooner than ``Retry-After``), or ``dead`` when the
    attempts are exhausted or the failure is final."""
    updated = dict(record)
    attempts = record["attempts"] + 1
    entry = {
        "attempt": attempts,
        "at": now,
        "status_code": status_code,
        "error": error,
        "duration_ms": duration_ms,
    }
    updated["history"] = [*record.get("history", []), entry][-HISTORY_LIMIT:]
    updated.update(
        attempts=attempts, updated_at=now, last_status_code=status_code, last_error=error
    )
    if status_code is not None and 200 <= status_code < 300:
        updated.update(state="delivered", next_attempt_at=None, last_error=None)
        return updated
    delay = None if final or not retryable_status(status_code) else retry_delay_ms(attempts)
    if delay is None:
        updated.update(state="dead", next_attempt_at=None)
    else:
        wait = max(delay, min(retry_after_ms or 0, RETRY_DELAYS_MS[-1]))
        updated.update(state="pending", next_attempt_at=now + wait)
    return updated


def retried(record: dict[str, Any], now: int) -> dict[str, Any]:
    """A delivery sent again by hand (``POST …/deliveries/{id}/retry``): pending now,
    with the whole schedule ahead of it again."""
    return {**record, "state": "pending", "attempts": 0, "next_attempt_at": now, "updated_at": now}


def subscription_event(kind: str, subscription: dict[str, Any], now: int) -> dict[str, Any]:
    """``webhook.subscription.created`` / ``…deleted`` (ojs-webhooks §11.1)."""
    data = {
        "subscription_id": subscription["id"],
        "url": subscription["url"],
        "events": subscription["events"],
        **_tenant_of(subscription),
    }
    return envelope(kind, subscription["id"], now, data, new_event_id())


OUTCOME_EVENTS = {
    "delivered": "webhook.delivered",
    "pending": "webhook.failed",
    "dead": "webhook.dead",
}


def outcome_event(
    delivery: dict[str, Any], subscription: dict[str, Any], now: int
) -> dict[str, Any] | None:
    """The event of one attempt's outcome (ojs-webhooks §11.1): ``webhook.delivered``,
    ``webhook.failed`` (tried again) or ``webhook.dead``. ``None`` for the delivery of a
    ``webhook.*`` event: the outcome of delivering an event about deliveries is no event,
    so they never feed each other."""
    if str(delivery.get("event_type") or "").startswith("webhook."):
        return None
    data: dict[str, Any] = {
        "delivery_id": delivery["id"],
        "subscription_id": subscription["id"],
        "url": subscription["url"],
        "event_id": delivery["event_id"],
        "event_type": delivery.get("event_type"),
        "attempt": delivery["attempts"],
        "status_code": delivery.get("last_status_code"),
        **_tenant_of(subscription),
    }
    if delivery["state"] != "delivered":
        data["error"] = delivery.get("last_error")
    if delivery["state"] == "pending" and delivery.get("next_attempt_at") is not None:
        data["next_attempt_at"] = format_ms(delivery["next_attempt_at"])
    return envelope(OUTCOME_EVENTS[delivery["state"]], delivery["id"], now, data, new_event_id())


def _tenant_of(subscription: dict[str, Any]) -> dict[str, str]:
    tenant = subscription.get("tenant_id")
    return {"tenant_id": tenant} if tenant is not None else {}


def public(subscription: dict[str, Any]) -> dict[str, Any]:
    """The subscription without its secrets (every answer but the creation's)."""
    return {
        key: value
        for key, value in subscription.items()
        if key not in ("secret", "previous_secret", "previous_secret_until")
    }


__all__ = [
    "HISTORY_LIMIT",
    "MAX_ATTEMPTS",
    "RETRY_DELAYS_MS",
    "ROTATION_GRACE_MS",
    "after_attempt",
    "apply_update",
    "check_url",
    "delivery_id",
    "host_allowed",
    "matches",
    "new_delivery",
    "outcome_event",
    "parse_subscription",
    "public",
    "retried",
    "retry_delay_ms",
    "retryable_status",
    "rotate_secret",
    "signature",
    "signature_header",
    "subscription_event",
    "verify",
    "wants",
]
