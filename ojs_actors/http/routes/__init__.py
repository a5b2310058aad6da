"""One blueprint per resource of the HTTP binding."""

from quart import Blueprint

from ..wire import JsonRoute
from . import (
    admin,
    admin_ui,
    cron,
    dead_letter,
    events,
    jobs,
    openapi,
    queues,
    stream,
    system,
    workers,
    workflows,
)

PUBLIC: tuple[Blueprint, ...] = (
    system.blueprint,
    openapi.blueprint,
    jobs.blueprint,
    workers.blueprint,
    queues.blueprint,
    dead_letter.blueprint,
    admin.api,
    events.blueprint,
    stream.blueprint,
    cron.blueprint,
    workflows.blueprint,
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
