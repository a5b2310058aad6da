"""A tenant's configuration (ojs-multi-tenancy §8.1): its resource limits, fairness weight
and priority boost, kept in the backend so every process sharing it applies the same.

A configured tenant is the versioned snapshot ``tenant:<id>``, written by compare-and-set
(the first write also appends ``tenant.created`` to the event outbox, §11.1). Each process
reads them all at most every ``refresh_ms`` (:meth:`TenantConfigs.refresh`): a change
through another process applies here within that. Static configuration (§15.1,
``--tenants`` / ``OJS_TENANTS``) is written at start-up through the same path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..backends import Snapshots
from ..core import Conflict, InvalidRequest, NotFound, format_ms
from ..core.events import envelope, new_event_id
from ..core.rate_policy import NAMED_PERIODS
from ..core.timefmt import parse_duration_ms
from .clock import Clock
from .tenancy import parse_tenant

PREFIX = "tenant:"
COUNT_LIMITS = ("max_concurrency", "max_queue_depth", "max_scheduled")
RATE_LIMIT = "max_enqueue_rate"
LIMITS = (*COUNT_LIMITS, RATE_LIMIT)
MAX_CAS_ATTEMPTS = 8


def _bad(field: str, message: str, received: object = None) -> InvalidRequest:
    return InvalidRequest(f"'{field}' {message}.", details={"field": field, "received": received})


def _count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(field, "must be an integer of at least 0", value)
    return value


def _rate(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(field, 'must be an object such as {"limit": 1000, "period": "PT1M"}', value)
    limit = value.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise _bad(f"{field}.limit", "must be a positive integer", limit)
    period = value.get("period", "PT1S")
    if not (isinstance(period, str) and period in NAMED_PERIODS):
        if parse_duration_ms(period, f"{field}.period") < 1:
            raise _bad(f"{field}.period", "must be a positive duration", period)
    return {"limit": limit, "period": period}


def period_ms(rate: Mapping[str, Any]) -> int:
    """The window of a stored ``max_enqueue_rate`` (validated when stored)."""
    period = rate["period"]
    return NAMED_PERIODS.get(period) or parse_duration_ms(period, "max_enqueue_rate.period")


def parse_limits(body: object, field: str = "limits") -> dict[str, Any]:
    """The limits an object sets; ``null`` for a limit (returned as ``None``) removes it."""
    if not isinstance(body, dict):
        raise _bad(field, "must be an object", body)
    limits: dict[str, Any] = {}
    for name, value in body.items():
        if name == "reason":
            continue
        if name not in LIMITS:
            raise InvalidRequest(
                f"Unknown tenant limit '{name}'; the limits are {', '.join(LIMITS)}.",
                details={"field": f"{field}.{name}", "allowed": list(LIMITS)},
            )
        if value is None:
            limits[name] = None
        elif name == RATE_LIMIT:
            limits[name] = _rate(value, f"{field}.{name}")
        else:
            limits[name] = _count(value, f"{field}.{name}")
    return limits


def parse_config(tenant_id: str, body: object) -> dict[str, Any]:
    """A tenant's configuration from a ``PUT /ojs/v1/admin/tenants/{id}`` body (§8.1)."""
    tenant = parse_tenant(tenant_id, "tenant_id")
    if not isinstance(body, dict):
        raise InvalidRequest("The tenant configuration must be a JSON object.")
    if body.get("tenant_id", tenant) != tenant:
        raise _bad("tenant_id", "must match the tenant id in the path", body.get("tenant_id"))
    limits = parse_limits(body.get("limits") or {})
    weight = body.get("fairness_weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        raise _bad("fairness_weight", "must be a number greater than 0", weight)
    boost = body.get("priority_boost", 0)
    if isinstance(boost, bool) or not isinstance(boost, int):
        raise _bad("priority_boost", "must be an integer", boost)
    return {
        "tenant_id": tenant,
        "limits": {name: value for name, value in limits.items() if value is not None},
        "fairness_weight": weight,
        "priority_boost": boost,
    }


def load_static(text: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    """Static tenant configuration (``OJS_TENANTS``): JSON, or the path of a JSON file,
    holding ``{tenant_id: config}`` or a list of configs each naming its ``tenant_id``;
    :class:`InvalidRequest` (or ``OSError``/``ValueError``) if it is not valid."""
    stripped = text.strip()
    if not stripped:
        return ()
    raw = json.loads(stripped if stripped[0] in "[{" else Path(stripped).read_text("utf-8"))
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list) and all(isinstance(item, dict) for item in raw):
        items = [(item.get("tenant_id"), item) for item in raw]
    else:
        raise InvalidRequest("Tenant configuration must be an object or a list of objects.")
    configs = []
    for tenant, body in items:
        config = parse_config(tenant if isinstance(tenant, str) else "", body)
        configs.append((config["tenant_id"], body))
    return tuple(configs)


def config_wire(record: Mapping[str, Any]) -> dict[str, Any]:
    wire = {key: value for key, value in record.items() if key not in ("created_at", "updated_at")}
    for stamp in ("created_at", "updated_at"):
        if record.get(stamp) is not None:
            wire[stamp] = format_ms(record[stamp])
    return wire


def weight_of(config: Mapping[str, Any] | None) -> float:
    """A tenant's ``fairness_weight`` (§7.2): 1 unless configured (``_default`` too)."""
    return 1 if config is None else config.get("fairness_weight", 1)


def not_found(tenant: str) -> NotFound:
    return NotFound(
        f"Tenant '{tenant}' not found.", details={"resource_type": "tenant", "resource_id": tenant}
    )


class TenantConfigs:
    """The configured tenants: stored, changed and, cached, read on the hot paths."""

    def __init__(self, snapshots: Snapshots, clock: Clock, refresh_ms: int) -> None:
        self._snapshots = snapshots
        self._clock = clock
        self._refresh_ms = refresh_ms
        self._cached: dict[str, dict[str, Any]] = {}
        self._loaded_at: int | None = None

    async def refresh(self) -> None:
        """Re-read the configurations if the cached ones are ``refresh_ms`` old."""
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh_ms:
            self._loaded_at = now  # the calls meanwhile use what is known
            records = await self._snapshots.list_snapshots(PREFIX)
            self._cached = {record["tenant_id"]: record for record in records.values()}

    def forget(self) -> None:
        """Drop the cached configurations (the store was reset)."""
        self._cached = {}
        self._loaded_at = None

    def cached(self, tenant: str) -> dict[str, Any] | None:
        """``tenant``'s configuration as last read (see :meth:`refresh`)."""
        return self._cached.get(tenant)

    @property
    def any_configured(self) -> bool:
        return bool(self._cached)

    async def get(self, tenant: str) -> dict[str, Any] | None:
        return await self._snapshots.load_snapshot(PREFIX + tenant)

    async def list(self) -> dict[str, dict[str, Any]]:
        records = await self._snapshots.list_snapshots(PREFIX)
        return {record["tenant_id"]: record for record in records.values()}

    async def put(self, tenant_id: str, body: object) -> tuple[dict[str, Any], bool]:
        """Create or replace a tenant's configuration; ``(record, created)``."""
        config = parse_config(tenant_id, body)
        return await self._write(config["tenant_id"], lambda _: config)

    async def update_limits(self, tenant_id: str, body: object) -> tuple[dict[str, Any], bool]:
        """Change some limits (§9.3; ``null`` removes one), keeping the others; a tenant
        not configured yet is created with them. ``(record, created)``."""
        tenant = parse_tenant(tenant_id, "tenant_id")
        changes = parse_limits(body, "limits")
        reason = body.get("reason") if isinstance(body, dict) else None
        if reason is not None and not isinstance(reason, str):
            raise _bad("reason", "must be a string", reason)

        def change(found: dict[str, Any] | None) -> dict[str, Any]:
            record = dict(found) if found else parse_config(tenant, {})
            limits = {**record.get("limits", {}), **changes}
            record["limits"] = {name: value for name, value in limits.items() if value is not None}
            if reason is not None:
                record["last_change_reason"] = reason
            return record

        return await self._write(tenant, change)

    async def _write(
        self, tenant: str, change: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> tuple[dict[str, Any], bool]:
        key = PREFIX + tenant
        for _ in range(MAX_CAS_ATTEMPTS):
            found = await self._snapshots.load_snapshot_versioned(key)
            now = self._clock()
            record = {**change(found[0] if found else None)}
            record["created_at"] = found[0]["created_at"] if found else now
            record["updated_at"] = now
            events = [] if found else [_created_event(record, now)]
            version = None if found is None else found[1]
            if await self._snapshots.save_snapshot_if(key, record, version, events=events):
                self._loaded_at = None
                return record, found is None
        raise Conflict(
            f"Tenant '{tenant}' kept changing; try again.",
            details={"resource_type": "tenant", "resource_id": tenant},
        )

    async def delete(self, tenant_id: str) -> None:
        tenant = parse_tenant(tenant_id, "tenant_id")
        if not await self._snapshots.delete_snapshot(PREFIX + tenant):
            raise not_found(tenant)
        self._loaded_at = None

    async def apply_static(self, configs: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Write the static configuration (§15.1): it replaces what is stored for those
        tenants at each start; others, configured through the API, are kept."""
        for tenant, body in configs:
            await self.put(tenant, body)


def _created_event(record: Mapping[str, Any], now: int) -> dict[str, Any]:
    tenant = record["tenant_id"]
    data = {"tenant_id": tenant, "limits": record.get("limits", {})}
    return envelope("tenant.created", tenant, now, data, new_event_id())


__all__ = [
    "LIMITS",
    "TenantConfigs",
    "config_wire",
    "load_static",
    "not_found",
    "parse_config",
    "parse_limits",
    "period_ms",
    "weight_of",
]
