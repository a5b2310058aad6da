"""The AWS backend, assembled: :class:`AwsBackend` (see the package docstring)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ...core import Job
from ..assembly import AssembledBackend
from ..base import EVERY_CAPABILITY
from ..outbox import EVENT_RETENTION
from .claims import AwsReadyQueue
from .client import AwsClients, AwsSettings
from .events import AwsEventLog
from .hints import SqsHints
from .jobs import AwsJobs
from .layout import Keys
from .setup import QueueUrls
from .snapshots import AwsSnapshots
from .timers import AwsDeadLetter, AwsTimers
from .writes import EVENT_TTL, Writer

DEFAULT_TABLE = "ojs-jobs"


class _Lifetime:
    """Start (the clients, the table), close, ping, and reset (every item under the
    prefix, found by a Scan: reset is for tests and conformance runs, not for work)."""

    def __init__(self, backend: AwsBackend) -> None:
        self._backend = backend

    async def start(self) -> None:
        backend = self._backend
        await backend.aws.start()
        if backend.create_table:
            from .setup import ensure_table

            await ensure_table(backend.aws, backend.table)

    async def close(self) -> None:
        await self._backend.aws.close()

    async def ping(self) -> float:
        started = time.perf_counter()
        backend = self._backend
        await backend.aws.dynamodb(
            "get_item", TableName=backend.table, Key=backend.keys.outseq(), ConsistentRead=True
        )
        return (time.perf_counter() - started) * 1000

    async def reset(self) -> None:
        backend = self._backend
        request: dict[str, Any] = {"TableName": backend.table, "ProjectionExpression": "pk, sk"}
        if backend.keys.prefix:
            request["FilterExpression"] = "begins_with(pk, :p)"
            request["ExpressionAttributeValues"] = {":p": {"S": backend.keys.prefix}}
        keys = await backend.aws.dynamodb_items("scan", **request)
        await backend.aws.delete_items(backend.table, keys)
        backend.writer.forget()
        backend.event_log.forget()


class AwsBackend(AssembledBackend):
    """Every part on one table through one :class:`AwsClients`: :class:`AwsJobs`,
    :class:`AwsReadyQueue`, :class:`AwsTimers`, :class:`AwsDeadLetter`,
    :class:`AwsSnapshots` and :class:`AwsEventLog`, writing through one :class:`Writer`."""

    name = "sqs"
    capabilities = EVERY_CAPABILITY
    needs_asyncio = False

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        table: str = DEFAULT_TABLE,
        prefix: str = "",
        queue_prefix: str = "ojs",
        fifo: bool = False,
        create_table: bool = True,
        event_retention: int = EVENT_RETENTION,
        event_ttl: int = EVENT_TTL,
        timeout: float = 5.0,
    ) -> None:
        self.aws = AwsClients(
            AwsSettings(region=region, endpoint_url=endpoint_url, timeout=timeout)
        )
        self.table = table
        self.keys = keys = Keys(prefix)
        self.create_table = create_table
        self.event_log = AwsEventLog(self.aws, keys, table, event_retention)
        self.hints = SqsHints(self.aws, QueueUrls(self.aws, queue_prefix, fifo))
        self.writer = writer = Writer(
            self.aws, keys, table, on_ready=self.hints.send, event_ttl=event_ttl
        )
        claims = AwsReadyQueue(self.aws, keys, table, writer, on_claim=self.hints.know)
        self._jobs_part = jobs = AwsJobs(self.aws, keys, table, writer)
        super().__init__(
            name=self.name,
            capabilities=self.capabilities,
            needs_asyncio=False,
            lifetime=_Lifetime(self),
            jobs=jobs,
            ready=claims,
            timers=AwsTimers(self.aws, keys, table, writer),
            dead_letter=AwsDeadLetter(self.aws, keys, table, writer),
            snapshots=AwsSnapshots(self.aws, keys, table, writer),
            events=self.event_log,
        )

    async def due_jobs(self, now: int, limit: int) -> list[Job]:
        # The scheduler's look at the clock also finishes atomic batches left half-way.
        await self._jobs_part.repair(now)
        return await super().due_jobs(now, limit)

    async def watch_ready(self, notify: Callable[[str], None]) -> None:
        """:class:`~ojs_actors.backends.base.ReadyNotices`, from :class:`SqsHints`."""
        await self.hints.watch_ready(notify)


__all__ = ["DEFAULT_TABLE", "AwsBackend"]
