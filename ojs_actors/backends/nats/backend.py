"""The NATS backend, assembled: :class:`NatsBackend` (see the package docstring)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..assembly import AssembledBackend
from ..base import EVERY_CAPABILITY
from ..outbox import EVENT_RETENTION
from .claims import NatsReadyQueue
from .connection import DEFAULT_URL, NatsStore
from .dead_letter import NatsDeadLetter
from .events import NatsEventLog
from .jetstream import MAX_BATCH_MESSAGES
from .jobs import NatsJobs
from .layout import EVENTS_STREAM, PREFIX, STREAM
from .records import JobRecords
from .snapshots import NatsSnapshots
from .timers import NatsTimers


class _Remembers(Protocol):
    """A part that remembers what this process read or wrote."""

    def forget(self) -> None: ...


class _Lifetime:
    """Start, close, ping and reset of the store, forgetting what the parts cached."""

    def __init__(self, store: NatsStore, parts: Sequence[_Remembers]) -> None:
        self._store, self._parts = store, parts

    async def start(self) -> None:
        await self._store.start()

    async def close(self) -> None:
        await self._store.close()

    async def ping(self) -> float:
        return await self._store.ping()

    async def reset(self) -> None:
        await self._store.reset()
        for part in self._parts:
            part.forget()


class NatsBackend(AssembledBackend):
    """Every part on one :class:`NatsStore`: :class:`NatsJobs`, :class:`NatsReadyQueue`,
    :class:`NatsTimers` and :class:`NatsDeadLetter` on one :class:`JobRecords`,
    :class:`NatsSnapshots` and :class:`NatsEventLog`."""

    name = "nats"
    capabilities = EVERY_CAPABILITY
    needs_asyncio = False

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        event_retention: int = EVENT_RETENTION,
        stream: str = STREAM,
        events_stream: str | None = None,
        prefix: str = PREFIX,
        storage: str = "file",
        replicas: int = 1,
        batch_max_messages: int = MAX_BATCH_MESSAGES,
        creds: str | None = None,
        tls_ca: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        request_timeout: float | None = 5.0,
    ) -> None:
        """``events_stream`` defaults to ``{stream}_EVENTS`` (``OJS_EVENTS``); ``tls_ca``
        is a CA file to verify a ``tls://`` server with (else the system's CAs)."""
        if events_stream is None:
            events_stream = EVENTS_STREAM if stream == STREAM else f"{stream}_EVENTS"
        if ssl_context is None and tls_ca:
            ssl_context = ssl.create_default_context(cafile=tls_ca)
        self.store = store = NatsStore(
            url,
            stream=stream,
            events_stream=events_stream,
            prefix=prefix,
            storage=storage,
            replicas=replicas,
            batch_max_messages=batch_max_messages,
            creds=creds,
            ssl_context=ssl_context,
            request_timeout=request_timeout,
        )
        self._events_part = events = NatsEventLog(store, event_retention)
        records = JobRecords(store, events)
        self._ready_part = ready = NatsReadyQueue(store, records)
        snapshots = NatsSnapshots(store, events)
        super().__init__(
            name=self.name,
            capabilities=self.capabilities,
            needs_asyncio=False,
            lifetime=_Lifetime(store, (records, ready, snapshots, events)),
            jobs=NatsJobs(store, records),
            ready=ready,
            timers=NatsTimers(store, records),
            dead_letter=NatsDeadLetter(store, records),
            snapshots=snapshots,
            events=events,
        )

    @property
    def url(self) -> str:
        return self.store.url

    @property
    def relay_name(self) -> str:
        """:class:`~ojs_actors.backends.base.EventSink`: the relay's cursor name."""
        return self._events_part.relay_name

    async def publish_events(self, events: Sequence[dict[str, Any]]) -> None:
        """:class:`~ojs_actors.backends.base.EventSink`, from :class:`NatsEventLog`."""
        await self._events_part.publish_events(events)

    async def watch_ready(self, notify: Callable[[str], None]) -> None:
        """:class:`~ojs_actors.backends.base.ReadyNotices`, from :class:`NatsReadyQueue`."""
        await self._ready_part.watch_ready(notify)
