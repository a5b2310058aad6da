"""One blueprint per resource of the HTTP binding."""

from quart import Blueprint

from ..wire import JsonRoute
from . import (
    admin,
    admin_ui,
    backpressure,
    checkpoints,
    cron,
    dead_letter,
    events,
    jobs,
    openapi,
    progress,
    queues,
    rate_limits,
    scheduling,
    schemas,
    stream,
    system,
    tenants,
    webhooks,
    worker_health,
    workers,
    workflows,
)

PUBLIC: tuple[Blueprint, ...] = (
    system.blueprint,
    openapi.blueprint,
    jobs.blueprint,
    progress.blueprint,
    checkpoints.blueprint,
    workers.blueprint,
    worker_health.blueprint,
    queues.blueprint,
    backpressure.blueprint,
    rate_limits.blueprint,
    dead_letter.blueprint,
    admin.api,
    events.blueprint,
    stream.blueprint,
    cron.blueprint,
    workflows.blueprint,
    webhooks.blueprint,
    schemas.blueprint,
    tenants.blueprint,
    scheduling.blueprint,
    admin_ui.blueprint,
)
UI: Blueprint = admin_ui.pages
"""The admin UI's static pages (no API operations)."""
RESET: Blueprint = admin.blueprint
"""Registered only when the server runs with ``--allow-reset``."""
DIRECT: tuple[JsonRoute, ...] = (
    jobs.enqueue,
    jobs.enqueue_batch,
    workers.fetch,
    workers.ack,
    workers.nack,
)
"""The hot endpoints, which :mod:`..direct` serves without Quart's per-request machinery."""

__all__ = ["DIRECT", "PUBLIC", "RESET", "UI"]
