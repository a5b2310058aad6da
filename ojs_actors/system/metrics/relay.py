"""The event relay's figures (``Admin.relay_status``) as metric families, ``sink`` label:
the relay's name. Only on backends with an event sink."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import Metric

from .families import counter, gauge


def relay_families(relay: dict[str, Any] | None) -> Iterator[Metric]:
    if relay is None:
        return
    sink = [relay["sink"]]
    if "backlog" in relay:
        yield gauge("ojs_outbox_backlog", "Outbox entries waiting for the event sink.",
                    ["sink"], [(sink, relay["backlog"])])  # fmt: skip
        yield gauge("ojs_outbox_limit", "Outbox backlog at which new work is refused.",
                    ["sink"], [(sink, relay["limit"])])  # fmt: skip
    holding = 1 if relay["relay"] == "publishing" else 0
    yield gauge("ojs_event_relay_holding", "1 while this process's relay publishes.",
                ["sink"], [(sink, holding)])  # fmt: skip
    yield counter("ojs_event_relay_published_events",
                  "Events this process's relay handed to the sink.",
                  ["sink"], [(sink, relay.get("published", 0))])  # fmt: skip
    yield counter("ojs_event_relay_failures",
                  "Publications the sink refused (each tried again).",
                  ["sink"], [(sink, relay.get("failures", 0))])  # fmt: skip


__all__ = ["relay_families"]
