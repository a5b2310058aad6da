"""The event outbox's backlog during one lifecycle run (``_workload.py``), in trio.

A backend that bounds its outbox (kafka: the events its relay has yet to hand to Kafka)
reports the backlog: ``GET /ojs/v1/health`` ``events.backlog`` over HTTP,
``OutboxBacklog.outbox_backlog()`` embedded. :func:`watching_backlog` samples it while
the run goes on, then waits until it is 0, so that every event of the run has reached
the sink when the run returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

BACKLOG_EVERY_S = 0.1
DRAIN_POLL_S = 0.02

BacklogReader = Callable[[], Awaitable[int | None]]
"""Reads the backlog now; None from a backend that keeps no such count."""


async def _sample(read: BacklogReader, samples: list[int]) -> None:
    while True:
        samples.append(await read() or 0)
        await trio.sleep(BACKLOG_EVERY_S)


async def _drained(read: BacklogReader) -> None:
    """Until the backlog reads 0 (polled: it is counted in the backend's store)."""
    while True:
        if not await read():
            return
        await trio.sleep(DRAIN_POLL_S)


@asynccontextmanager
async def watching_backlog(read: BacklogReader, deadline: float) -> AsyncIterator[list[int]]:
    """The backlog, read every :data:`BACKLOG_EVERY_S` while the block runs, into the list
    it yields; after the block, wait until the backlog is 0 (until ``deadline``, a trio
    time). If the first read finds no count (not kafka), nothing more is read."""
    samples: list[int] = []
    if await read() is None:
        yield samples
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_sample, read, samples)
        yield samples
        nursery.cancel_scope.cancel()
    with trio.move_on_at(deadline):
        await _drained(read)
