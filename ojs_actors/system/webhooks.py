"""Webhooks in a System (ojs-webhooks): the supervisor of the dispatcher, and the API of
subscriptions and deliveries.

Subscriptions and deliveries live in the snapshot store (``webhook-sub:<id>``,
``webhook-delivery:<id>``), so every backend has them and every process sharing one sees
the same; changes are compare-and-set, so two processes changing one subscription do
not undo each other. Sending is the :class:`.WebhookDispatcher`'s, but for the test
endpoint's ping, sent at once by the process asked.

A subscription made while acting for a tenant is that tenant's (ojs-webhooks §9.3):
only requests acting for it see or change it (others get the 404 of a missing one, as
for another tenant's job), and it gets only its tenant's events. One made acting for
nobody (an operator) gets every tenant's; an operator sees every subscription.
Creation and deletion append ``webhook.subscription.*`` events in the same write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..actors import ChildSpec, Supervisor
from ..backends import Backend
from ..core import InvalidRequest, NotFound, ServiceRestarting, webhooks
from ..core.events import envelope, new_event_id
from .clock import Clock
from .settings import Settings
from .signals import Signals
from .supervision import SupervisorSlot, one_for_one
from .tenancy import acting_tenant
from .webhook_dispatcher import DELIVERY_PREFIX, SUBSCRIPTION_PREFIX, WebhookDispatcher
from .webhook_sender import new_client, send

DISPATCHER = "webhook-dispatcher"
RESTARTS = (10, 5.0)
CAS_ATTEMPTS = 10
DELIVERY_STATES = ("pending", "delivered", "dead")


class Webhooks:
    def __init__(
        self, backend: Backend, clock: Clock, settings: Settings, signals: Signals, holder: str
    ) -> None:
        """``holder``: this process in the dispatcher's lease."""
        self.backend = backend
        self.clock = clock
        self.settings = settings
        self.signals = signals
        self.holder = holder
        self.supervisors = SupervisorSlot("webhooks", self._new_supervisor)

    def _new_supervisor(self) -> Supervisor:
        return one_for_one("webhooks", RESTARTS, [ChildSpec(DISPATCHER, self._new_dispatcher)])

    def _new_dispatcher(self) -> WebhookDispatcher:
        return WebhookDispatcher(
            self.backend, self.clock, self.settings, self.signals, holder=self.holder
        )

    @property
    def dispatcher(self) -> WebhookDispatcher | None:
        """The running dispatcher (a new one after each restart)."""
        child = self.supervisors.current.child(DISPATCHER)
        return child if isinstance(child, WebhookDispatcher) else None

    # -- subscriptions

    async def create_subscription(self, body: dict[str, Any]) -> dict[str, Any]:
        """A new subscription, with its secret (shown this once, ojs-webhooks §6.1)."""
        now = self.clock()
        record = webhooks.parse_subscription(
            body, now, self.settings.webhook_allowed_hosts, acting_tenant()
        )
        event = webhooks.subscription_event("webhook.subscription.created", record, now)
        await self.backend.save_snapshot_if(
            SUBSCRIPTION_PREFIX + record["id"], record, None, events=[event]
        )
        self._changed()
        return record

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        records = await self._visible_subscriptions()
        ordered = sorted(records, key=lambda r: (r.get("created_at", 0), r["id"]))
        return [webhooks.public(record) for record in ordered]

    async def subscription_info(self, subscription_id: str) -> dict[str, Any]:
        return webhooks.public(await self._subscription(subscription_id))

    async def update_subscription(
        self, subscription_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        record = await self._change(
            subscription_id,
            lambda record: webhooks.apply_update(
                record, body, self.clock(), self.settings.webhook_allowed_hosts
            ),
        )
        return webhooks.public(record)

    async def rotate_secret(self, subscription_id: str) -> dict[str, Any]:
        """The subscription with its new secret (ojs-webhooks §8.3)."""
        return await self._change(
            subscription_id, lambda record: webhooks.rotate_secret(record, self.clock())
        )

    async def delete_subscription(self, subscription_id: str) -> dict[str, Any]:
        """Forget the subscription and its deliveries: pending ones are cancelled (§6.5).
        It is first switched off and marked deleted, with its ``webhook.subscription.deleted``
        event in that write (a delete cannot carry events); a mark left by a crash is
        deleted by the dispatcher's next rescan."""
        record = await self._change(
            subscription_id,
            lambda record: {**record, "active": False, "deleted": True},
            lambda record: [
                webhooks.subscription_event("webhook.subscription.deleted", record, self.clock())
            ],
        )
        await self.backend.delete_snapshot(SUBSCRIPTION_PREFIX + subscription_id)
        for key, delivery in (await self.backend.list_snapshots(DELIVERY_PREFIX)).items():
            if delivery.get("subscription_id") == subscription_id:
                await self.backend.delete_snapshot(key)
        self._changed()
        return webhooks.public(record)

    async def test_subscription(self, subscription_id: str) -> dict[str, Any]:
        """Send a ``webhook.test`` event now and say how the endpoint answered (§6.6)."""
        subscription = await self._subscription(subscription_id)
        now = self.clock()
        event = envelope(
            "webhook.test",
            subscription_id,
            now,
            {"subscription_id": subscription_id, "message": "ping"},
            new_event_id(),
        )
        delivery = webhooks.delivery_id(subscription_id, event["id"])
        timeout = self.settings.webhook_timeout
        async with new_client(self.settings.webhook_allowed_hosts, timeout) as client:
            outcome = await send(client, subscription, event, delivery, now, timeout)
        return {
            "success": outcome.ok,
            "status_code": outcome.status_code,
            "response_time_ms": outcome.duration_ms,
            "response_body": outcome.body,
            "error": outcome.error,
            "delivery_id": delivery,
        }

    # -- deliveries

    async def list_deliveries(
        self, subscription_id: str | None, state: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of deliveries, newest first, and how many match."""
        if state is not None and state not in DELIVERY_STATES:
            raise InvalidRequest(
                f"Query parameter 'state' must be one of {', '.join(DELIVERY_STATES)}.",
                details={"parameter": "state", "received": state},
            )
        if subscription_id is not None:
            await self._subscription(subscription_id)
        owned = None  # an operator's: every subscription's deliveries
        if acting_tenant() is not None:
            owned = {record["id"] for record in await self._visible_subscriptions()}
        records = [
            record
            for record in (await self.backend.list_snapshots(DELIVERY_PREFIX)).values()
            if (subscription_id is None or record.get("subscription_id") == subscription_id)
            and (owned is None or record.get("subscription_id") in owned)
            and (state is None or record.get("state") == state)
        ]
        records.sort(key=lambda r: (r.get("created_at", 0), r["id"]), reverse=True)
        return records[offset : offset + limit], len(records)

    async def delivery_info(self, delivery_id: str) -> dict[str, Any]:
        record = await self.backend.load_snapshot(DELIVERY_PREFIX + delivery_id)
        if record is None or not await self._owns_delivery(record):
            raise _not_found("webhook_delivery", delivery_id)
        return record

    async def retry_delivery(self, delivery_id: str) -> dict[str, Any]:
        """Send a finished delivery again, with the whole schedule ahead (§10); the
        dispatcher picks it up at its next look at the store."""
        key = DELIVERY_PREFIX + delivery_id
        for _ in range(CAS_ATTEMPTS):
            stored = await self.backend.load_snapshot_versioned(key)
            if stored is None or not await self._owns_delivery(stored[0]):
                raise _not_found("webhook_delivery", delivery_id)
            record, version = stored
            if record.get("state") == "pending":
                return record
            updated = webhooks.retried(record, self.clock())
            if await self.backend.save_snapshot_if(key, updated, version) is not None:
                self._changed()  # a rescan finds it pending
                return updated
        raise _busy("webhook_delivery", delivery_id)

    # -- helpers

    async def _subscription(self, subscription_id: str) -> dict[str, Any]:
        record = await self.backend.load_snapshot(SUBSCRIPTION_PREFIX + subscription_id)
        if record is None or not _visible(record):
            raise _not_found("webhook_subscription", subscription_id)
        return record

    async def _visible_subscriptions(self) -> list[dict[str, Any]]:
        records = await self.backend.list_snapshots(SUBSCRIPTION_PREFIX)
        return [record for record in records.values() if _visible(record)]

    async def _owns_delivery(self, delivery: dict[str, Any]) -> bool:
        """Whether the acting tenant may see ``delivery`` (that of one of its subscriptions)."""
        if acting_tenant() is None:
            return True
        key = SUBSCRIPTION_PREFIX + str(delivery.get("subscription_id"))
        subscription = await self.backend.load_snapshot(key)
        return subscription is not None and _visible(subscription)

    async def _change(
        self,
        subscription_id: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        events: Callable[[dict[str, Any]], list[dict[str, Any]]] = lambda _: [],
    ) -> dict[str, Any]:
        """Apply ``change`` to the stored subscription by compare-and-set, appending
        ``events`` (of the record before the change) in the same write."""
        key = SUBSCRIPTION_PREFIX + subscription_id
        for _ in range(CAS_ATTEMPTS):
            stored = await self.backend.load_snapshot_versioned(key)
            if stored is None or not _visible(stored[0]):
                raise _not_found("webhook_subscription", subscription_id)
            updated = change(stored[0])
            written = await self.backend.save_snapshot_if(
                key, updated, stored[1], events=events(stored[0])
            )
            if written is not None:
                self._changed()
                return updated
        raise _busy("webhook_subscription", subscription_id)

    def _changed(self) -> None:
        """Tell this process's dispatcher (the others see it at their next rescan)."""
        dispatcher = self.dispatcher
        if dispatcher is not None:
            dispatcher.subscriptions_changed()


def _visible(subscription: dict[str, Any]) -> bool:
    """Whether the acting tenant may see ``subscription`` (an operator sees every one);
    one marked deleted is no one's."""
    if subscription.get("deleted"):
        return False
    tenant = acting_tenant()
    return tenant is None or subscription.get("tenant_id") == tenant


def _not_found(kind: str, identifier: str) -> NotFound:
    label = kind.replace("_", " ").capitalize()
    return NotFound(
        f"{label} '{identifier}' not found.",
        details={"resource_type": kind, "resource_id": identifier},
    )


def _busy(kind: str, identifier: str) -> ServiceRestarting:
    return ServiceRestarting(
        f"The {kind.replace('_', ' ')} '{identifier}' kept changing; try again.",
        details={"resource_type": kind, "resource_id": identifier},
    )


__all__ = ["Webhooks"]
