"""The WebhookDispatcher: turns the event outbox into webhook deliveries and sends them,
at least once, from one process of a cluster at a time, beside job processing, never in
its way (ojs-webhooks §4.3).

Every process sharing the store runs one; only the holder of the lease
``webhook-lease`` (:class:`.Lease`, held as the event relay holds its own) works:

1. It reads the outbox through the durable cursor ``webhooks`` (:class:`.EventCursor`)
   and, for each event and each active subscription it matches, stores a pending
   delivery (``webhook-delivery:<id>``, the id a function of the two, written only if
   new), then commits the cursor. A crash before the commit reads those events again
   and finds their deliveries there: none is lost, none made twice.
2. It sends the deliveries that are due, at most ``Settings.webhook_concurrency`` at
   once, each bounded by ``Settings.webhook_timeout``, in its own tasks: a slow or dead
   receiver holds up only its own deliveries. Each attempt's outcome is stored by
   compare-and-set (:func:`ojs_actors.core.webhooks.after_attempt`): delivered, dead, or
   pending again at the next step of the retry schedule.

Pending deliveries are the store's: the holder reads them on taking the lease and again
every :data:`RESCAN_SECONDS` (deliveries retried by hand through another process, a
subscription switched back on; changes through this process wake it at once), when it
also prunes each subscription's log to its
newest ``Settings.webhook_log_limit`` finished deliveries. While many deliveries wait
(:data:`MAX_PENDING`, a receiver down), reading the outbox pauses, so memory stays
bounded; events then wait in the outbox (its retention bounds how long).

A tenant's subscription gets only the events of that tenant (:func:`event_tenant`), an
operator's every event. Each attempt's outcome appends ``webhook.delivered``,
``webhook.failed`` or ``webhook.dead`` with it (none for deliveries of ``webhook.*``
events, so those never beget more).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Protocol

import httpx
import trio

from ..actors import Actor
from ..backends.base import EventLog, Snapshots
from ..core import BackendUnavailable, OJSError, parse_timestamp, webhooks
from .clock import Clock
from .event_cursor import EventCursor
from .lease import Lease
from .settings import Settings
from .signals import Signals, wait_any
from .tenancy import DEFAULT_TENANT, split_shard
from .webhook_sender import new_client, send

SUBSCRIPTION_PREFIX = "webhook-sub:"
DELIVERY_PREFIX = "webhook-delivery:"
LEASE_KEY = "webhook-lease"
CURSOR_NAME = "webhooks"
LEASE_SECONDS = 10.0
RESCAN_SECONDS = 30.0
IDLE_LOOK_SECONDS = 5.0
"""How often a dispatcher without an active subscription looks for one (one backend call)."""
READ_BATCH = 200
MAX_PENDING = 10_000
FINISHED = ("delivered", "dead")
log = logging.getLogger("ojs_actors.system")


class _Store(EventLog, Snapshots, Protocol):
    pass


class WebhookDispatcher(Actor):
    def __init__(
        self,
        store: _Store,
        clock: Clock,
        settings: Settings,
        signals: Signals | None = None,
        *,
        holder: str,
        lease: float = LEASE_SECONDS,
    ) -> None:
        """``holder`` names this process in the lease: the same for every instance of one
        process, so a restarted dispatcher takes its lease back at once."""
        self.store = store
        self.clock = clock
        self.settings = settings
        self.signals = signals
        self.lease = Lease(store, LEASE_KEY, holder, clock, lease)
        self.cursor = EventCursor(store, CURSOR_NAME)
        self.sent = 0
        """Attempts made by this instance (successful or not)."""
        self._due: dict[str, int] = {}
        """Pending deliveries this holder knows of -> when their next attempt is due."""
        self._in_flight: set[str] = set()
        self._rescan_at = 0
        self._subscribed = False
        """Whether any subscription is active (as of the last rescan): without one, the
        outbox is not read at all, and its events wait there (a subscription gets only the
        events from its creation on)."""
        self._wake = trio.Event()
        self._client: httpx.AsyncClient | None = None
        self._deliveries: trio.Nursery | None = None

    async def on_start(self) -> None:
        self.nursery.start_soon(self._run)

    async def _run(self) -> None:
        """The dispatcher's loop. Deliveries run in a nursery inside the HTTP client's block:
        on a stop they are cancelled (their outcome unrecorded: sent again later) before
        the client closes, never failed by a closed client."""
        timeout = self.settings.webhook_timeout
        async with (
            new_client(self.settings.webhook_allowed_hosts, timeout) as client,
            trio.open_nursery() as deliveries,
        ):
            self._client, self._deliveries = client, deliveries
            while True:
                appended = self.signals.appended_event() if self.signals is not None else None
                self._wake = trio.Event()  # before the step: a delivery ending in it counts
                try:
                    more = await self.step()
                except BackendUnavailable as error:  # an outage is no crash: look again later
                    log.warning(
                        "webhooks: %s; retrying in %.1fs", error, self.settings.poll_interval
                    )
                    more = False
                if more:
                    await trio.lowlevel.checkpoint()
                    continue
                await self._pause(appended)

    async def step(self) -> bool:
        """One round: keep the lease, turn new events into deliveries, start those due.
        Whether more events are waiting in the outbox at once. Without an active
        subscription, only look for one every :data:`IDLE_LOOK_SECONDS` (no lease: an idle
        feature costs one backend call per rescan)."""
        now = self.clock()
        if not self._subscribed:
            if now < self._rescan_at:
                return False
            self._rescan_at = now + int(IDLE_LOOK_SECONDS * 1000)
            stored = await self.store.list_snapshots(SUBSCRIPTION_PREFIX)
            self._subscribed = any(sub.get("active") for sub in stored.values())
            if not self._subscribed:
                self.lease.drop()  # not renewed: it runs out for another process to take
                self._due.clear()
                return False
            self._rescan_at = 0  # the whole rescan, under the lease
        if not await self.lease.keep():
            self._due.clear()
            return False
        if self.lease.taken:
            self.cursor = EventCursor(self.store, CURSOR_NAME)  # another holder moved it
            self._rescan_at = 0
        if now >= self._rescan_at:
            await self._rescan(now)
            self._rescan_at = now + int(RESCAN_SECONDS * 1000)
        more = False
        if len(self._due) < MAX_PENDING:
            more = await self._read_events(now)
        self._start_due(now)
        return more

    def subscriptions_changed(self) -> None:
        """A subscription was made or changed through this process: look at once."""
        self._rescan_at = 0
        self._wake.set()

    async def _read_events(self, now: int) -> bool:
        if not self._subscribed:
            return False
        events = await self.cursor.read(READ_BATCH)
        if not events:
            return False
        stored = await self.store.list_snapshots(SUBSCRIPTION_PREFIX)  # as of these events
        subscriptions = [sub for sub in stored.values() if sub.get("active")]
        for event in events:
            for subscription in subscriptions:
                if (
                    webhooks.matches(subscription, event)
                    and _since(subscription, event)
                    and _tenant_gets(subscription, event)
                ):
                    record = webhooks.new_delivery(subscription["id"], event, now)
                    key = DELIVERY_PREFIX + record["id"]
                    if await self.store.save_snapshot_if(key, record, None) is not None:
                        self._due[record["id"]] = now
        await self.cursor.commit(events[-1]["id"])
        return len(events) >= READ_BATCH

    def _start_due(self, now: int) -> None:
        free = self.settings.webhook_concurrency - len(self._in_flight)
        if free <= 0:
            return
        due = sorted(
            (at, delivery)
            for delivery, at in self._due.items()
            if at <= now and delivery not in self._in_flight
        )
        for _, delivery in due[:free]:
            self._in_flight.add(delivery)
            assert self._deliveries is not None
            self._deliveries.start_soon(self._deliver, delivery)

    async def _deliver(self, delivery: str) -> None:
        try:
            await self._attempt(delivery)
        except BackendUnavailable as error:  # the outcome is not stored: try again later
            log.warning("webhooks: delivery %s: %s", delivery, error)
            self._due[delivery] = self.clock() + int(self.settings.poll_interval * 1000)
        except Exception:  # one bad delivery must not stop the others (nor, escalating, jobs)
            log.exception("webhooks: delivery %s failed unexpectedly", delivery)
            self._due[delivery] = self.clock() + int(RESCAN_SECONDS * 1000)
        finally:
            self._in_flight.discard(delivery)
            self._wake.set()

    async def _attempt(self, delivery: str) -> None:
        key = DELIVERY_PREFIX + delivery
        stored = await self.store.load_snapshot_versioned(key)
        if stored is None or stored[0].get("state") != "pending":
            self._due.pop(delivery, None)  # finished or deleted meanwhile
            return
        record, version = stored
        subscription = await self.store.load_snapshot(
            SUBSCRIPTION_PREFIX + record["subscription_id"]
        )
        if subscription is None:  # deleted: its pending deliveries are cancelled
            self._due.pop(delivery, None)
            await self.store.delete_snapshot(key)
            return
        if not subscription.get("active"):
            self._due.pop(delivery, None)  # kept pending; the next rescan looks again
            return
        assert self._client is not None
        now = self.clock()
        outcome = await send(
            self._client,
            subscription,
            record["event"],
            delivery,
            now,
            self.settings.webhook_timeout,
        )
        self.sent += 1
        updated = webhooks.after_attempt(
            record,
            self.clock(),
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            retry_after_ms=outcome.retry_after_ms,
            final=outcome.final,
        )
        if outcome.ok:
            log.debug("webhooks: %s delivered to %s", delivery, subscription["url"])
        else:
            log.info(
                "webhooks: %s to %s failed (%s): %s",
                delivery,
                subscription["url"],
                outcome.error,
                updated["state"],
            )
        event = webhooks.outcome_event(updated, subscription, self.clock())
        written = await self.store.save_snapshot_if(
            key, updated, version, events=[event] if event is not None else ()
        )
        if written is None:
            self._due.pop(delivery, None)  # changed meanwhile (retried by hand, reset)
        elif updated["state"] == "pending":
            self._due[delivery] = updated["next_attempt_at"]
        else:
            self._due.pop(delivery, None)

    async def _rescan(self, now: int) -> None:
        """Learn the pending deliveries from the store; prune the logs; forget the
        deliveries of deleted subscriptions."""
        records = await self.store.list_snapshots(DELIVERY_PREFIX)
        subscriptions = await self.store.list_snapshots(SUBSCRIPTION_PREFIX)
        due: dict[str, int] = {}
        finished: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        doomed = [key for key, sub in subscriptions.items() if sub.get("deleted")]
        for key, record in records.items():
            sub = subscriptions.get(SUBSCRIPTION_PREFIX + record.get("subscription_id", ""))
            if sub is None:
                doomed.append(key)
            elif record.get("state") in FINISHED:
                finished[record["subscription_id"]].append(record)
            elif sub.get("active"):
                due[record["id"]] = record.get("next_attempt_at") or now
        for log_records in finished.values():
            log_records.sort(key=lambda record: record.get("updated_at", 0), reverse=True)
            doomed += [
                DELIVERY_PREFIX + r["id"] for r in log_records[self.settings.webhook_log_limit :]
            ]
        for key in doomed:
            await self.store.delete_snapshot(key)
        self._due = due
        self._subscribed = any(sub.get("active") for sub in subscriptions.values())

    async def _pause(self, appended: trio.Event | None) -> None:
        """Until the next look: the poll interval at most; sooner when the outbox grows, a
        delivery finishes, one falls due, the lease needs renewing or the rescan is due.
        Without a subscription, until the next rescan or one is made through this process."""
        now = self.clock()
        if not self._subscribed:  # the outbox is not read: its growth is no news
            seconds = max(0.0, (self._rescan_at - now) / 1000)
            appended = None
        elif self.lease.holding:
            wake_at = [self.lease.renew_at, self._rescan_at]
            if len(self._in_flight) < self.settings.webhook_concurrency:
                wake_at += [at for d, at in self._due.items() if d not in self._in_flight]
            seconds = min(self.settings.poll_interval, max(0.0, (min(wake_at) - now) / 1000))
        elif self.lease.until > now:
            seconds = min(self.lease.until - now + 1, self.lease.length_ms) / 1000
            appended = None
        else:
            seconds = self.settings.poll_interval
            appended = None
        with trio.move_on_after(seconds):
            await wait_any([event for event in (self._wake, appended) if event is not None])


def event_tenant(event: dict[str, Any]) -> str:
    """The tenant an event is of: the ``tenant_id`` its data names (cron, tenant and
    webhook events), else the owner of its queue (a tenant's jobs live in its own queues,
    and their events name them); :data:`DEFAULT_TENANT` for every other event."""
    data = event.get("data") or {}
    tenant = data.get("tenant_id")
    if isinstance(tenant, str):
        return tenant
    queue = data.get("queue")
    return split_shard(queue)[1] if isinstance(queue, str) else DEFAULT_TENANT


def _tenant_gets(subscription: dict[str, Any], event: dict[str, Any]) -> bool:
    tenant = subscription.get("tenant_id")
    return tenant is None or tenant == event_tenant(event)


def _since(subscription: dict[str, Any], event: dict[str, Any]) -> bool:
    """:func:`~ojs_actors.core.webhooks.wants`, for an event's envelope."""
    try:
        return webhooks.wants(subscription, parse_timestamp(event.get("time"), "time"))
    except OJSError:
        return bool(subscription.get("active"))


__all__ = [
    "CURSOR_NAME",
    "DELIVERY_PREFIX",
    "LEASE_KEY",
    "SUBSCRIPTION_PREFIX",
    "WebhookDispatcher",
    "event_tenant",
]
