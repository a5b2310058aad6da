"""The tunables of a :class:`~ojs_actors.system.System`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Settings:
    poll_interval: float = 1.0
    """How often waiting fetchers and the scheduler look again without a local wake-up
    (what they see of other processes sharing a networked backend)."""
    mailbox_capacity: int = 4096
    queue_restarts: tuple[int, float] = (10, 5.0)
    """Restart intensity of the queue supervisor: N restarts within T seconds."""
    workflow_restarts: tuple[int, float] = (10, 5.0)
    """Restart intensity of the workflows supervisor: N restarts within T seconds."""
    test_hooks: bool = False
    """Conformance-suite hooks: honour ``meta.test_directive`` in heartbeats."""
    worker_idle_timeout: float = 300.0
    """Seconds after a worker's last fetch or heartbeat when this process forgets it,
    with any directive (``set_worker_state``) still waiting for it."""
    max_workers: int = 65_536
    """The most workers remembered at once; past it, the longest silent is forgotten."""
    workflow_retention: float = 86_400.0
    """Seconds a finished workflow stays readable (``GET /ojs/v1/workflows/{id}``); it is
    deleted one to three minutes later."""
    schema_validation: str = "warn"
    """What a job whose ``args`` do not match its registered schema gets
    (ojs-schema-registry §7.2): ``strict`` a 422, ``warn`` accepted with warnings, ``off``
    no check (:mod:`ojs_actors.system.schemas`)."""
    schema_refresh: float = 1.0
    """Seconds this process checks enqueues against its cached view of the schema
    registry before reloading it: how long a schema changed through another process
    sharing the backend may take to be enforced here."""
    metrics: bool = True
    """Record Prometheus metrics (``GET /metrics``); off, nothing is recorded on any path
    and ``GET /metrics`` answers 404."""
    webhook_allowed_hosts: tuple[str, ...] = ()
    """Hosts webhook subscriptions (and their redirects) may target (``*.example.com``
    for subdomains); empty: any host (the server then POSTs wherever a client says)."""
    webhook_concurrency: int = 16
    """Webhook deliveries in flight at once (in the process holding the dispatcher's lease)."""
    webhook_timeout: float = 30.0
    """Seconds a webhook receiver has to answer (ojs-webhooks §7.3)."""
    webhook_log_limit: int = 100
    """Finished deliveries kept per subscription (``GET /ojs/v1/webhooks/deliveries``)."""
    tenants: tuple[tuple[str, dict[str, Any]], ...] = ()
    """Static tenant configuration (ojs-multi-tenancy §15.1), ``(tenant_id, config)`` as
    ``PUT /ojs/v1/admin/tenants/{id}`` takes it; written to the backend at start-up
    (:func:`~ojs_actors.system.tenant_config.load_static` reads ``OJS_TENANTS``)."""


__all__ = ["Settings"]
