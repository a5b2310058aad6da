"""A batch enqueue over several queues: each queue's policies apply to its own jobs, and the
batch stays atomic (ojs-http-binding: all jobs stored, or none).

Through the embedded API and the real app (both HTTP paths), on the in-memory backend
and trio's autojump clock.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from test_http import assert_error, call
from test_system import GatedBackend

from ojs_actors import open_system
from ojs_actors.backends import EventFilter
from ojs_actors.core import BackendUnavailable
from ojs_actors.system import System


def job(queue: str, n: int, **options: Any) -> dict[str, Any]:
    return {"type": "batch.job", "args": [n], "options": {"queue": queue, **options}}


ONE_PER_SECOND = {"rate_limit": {"max_per_second": 1}}


def mixed_batch() -> list[dict[str, Any]]:
    """Three jobs for ``qa`` (no limit), then three for ``qb``, limited to one a second."""
    return [job("qa", n) for n in range(3)] + [job("qb", n, **ONE_PER_SECOND) for n in range(3)]


async def test_each_queue_keeps_its_rate_limit_over_http(
    system: System, client: Any, autojump_clock: Any
) -> None:
    reply = await call(client, "POST", "/ojs/v1/jobs/batch", json={"jobs": mixed_batch()})
    assert reply.status == 201, reply.body
    assert [j["queue"] for j in reply.body["jobs"]] == ["qa"] * 3 + ["qb"] * 3

    fetched = await call(
        client, "POST", "/ojs/v1/workers/fetch", json={"queues": ["qb"], "count": 3}
    )
    assert len(fetched.body["jobs"]) == 1  # qb's limit, though qa's job came first
    assert len(await system.fetch(["qa"], count=3)) == 3
    await trio.sleep(1.01)
    assert len(await system.fetch(["qb"], count=3)) == 1
    assert (await system.queue_info("qb"))["max_per_second"] == 1
    assert (await system.queue_info("qa"))["max_per_second"] is None


async def test_a_fetcher_waiting_on_a_queue_gets_no_more_than_its_limit(
    autojump_clock: Any,
) -> None:
    """The limit is in place before the queue's actor can hand any of the batch's jobs
    out, also to a fetch that was already waiting when the batch was stored."""
    backend = GatedBackend()
    async with open_system(backend) as system, trio.open_nursery() as nursery:
        claimed: list[int] = []

        async def wait_for_work() -> None:
            claimed.append(len(await system.fetch(["qb"], count=3, wait=5)))

        nursery.start_soon(wait_for_work)
        await trio.sleep(0.1)
        gate = backend.gate = trio.Event()  # the batch's insert waits here until opened
        nursery.start_soon(system.enqueue_batch, mixed_batch())
        await backend.held.wait()
        await trio.sleep(0.1)
        gate.set()
    assert claimed == [1]


async def test_a_paused_queue_in_a_batch_keeps_its_jobs_back(system: System) -> None:
    await system.set_paused("qb", True)
    await system.enqueue_batch([job("qa", 0), job("qb", 1), job("qa", 2)])
    assert len(await system.fetch(["qa", "qb"], count=3)) == 2
    await system.set_paused("qb", False)
    assert [j.queue for j in await system.fetch(["qa", "qb"], count=3)] == ["qb"]


async def test_a_refused_batch_stores_nothing_and_sets_no_limit(
    system: System, client: Any
) -> None:
    existing = await system.enqueue(job("qa", 0))
    clash = {**job("qb", 9), "id": existing.id}
    batch = [job("qb", 1, **ONE_PER_SECOND), job("qc", 2), clash]
    reply = await call(client, "POST", "/ojs/v1/jobs/batch", json={"jobs": batch})
    assert assert_error(reply, 409, "duplicate")["details"]["index"] == 2

    for queue in ("qb", "qc"):
        assert await system.fetch([queue], count=10) == []
    events = await system.events(EventFilter(queues=frozenset({"qb", "qc"})))
    assert events == []  # no job.enqueued for the jobs that were never stored
    for n in range(3):
        await system.enqueue(job("qb", n))
    assert len(await system.fetch(["qb"], count=3)) == 3  # no limit was adopted


async def test_crossing_batches_do_not_deadlock(system: System, autojump_clock: Any) -> None:
    orders = (["qa", "qb"], ["qb", "qa"], ["qc", "qb", "qa"], ["qa", "qc"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for round_ in range(20):
                queues = orders[round_ % len(orders)]
                batch = [job(queue, round_) for queue in queues]
                nursery.start_soon(system.enqueue_batch, batch)
                nursery.start_soon(system.fetch, ["qa", "qb", "qc"], 2)
    counts = [(await system.queue_stats(queue))[1] for queue in ("qa", "qb", "qc")]
    assert sum(sum(by_state.values()) for by_state in counts) == sum(
        len(orders[r % len(orders)]) for r in range(20)
    )


async def test_a_batch_answers_in_request_order(system: System) -> None:
    batch = [job("qb", 0), job("qa", 1), job("qc", 2), job("qa", 3)]
    stored = await system.enqueue_batch(batch)
    assert [(j.queue, j.args[0]) for j in stored] == [("qb", 0), ("qa", 1), ("qc", 2), ("qa", 3)]


async def test_a_batch_abandoned_while_it_is_stored_still_gets_each_queues_policies(
    autojump_clock: Any,
) -> None:
    """A client gone (or a request deadline) mid-insert cancels the request, not the
    insert: the batch is stored and every queue of it, not only the one whose actor
    stored it, applies its policies."""
    backend = GatedBackend()
    limited_first = [job("qa", n, **ONE_PER_SECOND) for n in range(3)] + [job("qb", 9)]
    async with open_system(backend) as system:
        gate = backend.gate = trio.Event()
        with trio.move_on_after(1) as request:
            await system.enqueue_batch(limited_first)
        assert request.cancelled_caught and backend.held.is_set()
        gate.set()
        with trio.fail_after(1):
            assert len(await system.fetch(["qa"], count=3)) == 1
            assert len(await system.fetch(["qb"], count=3)) == 1
        assert (await system.queue_info("qa"))["max_per_second"] == 1


async def test_a_backend_failure_stores_nothing_and_frees_every_queue(
    autojump_clock: Any,
) -> None:
    backend = GatedBackend()
    async with open_system(backend) as system:
        backend.fail_next_insert = BackendUnavailable("the backend is away")
        with pytest.raises(BackendUnavailable):
            await system.enqueue_batch(mixed_batch())
        with trio.fail_after(1):  # no queue actor is left held
            assert await system.fetch(["qa", "qb"], count=10) == []
            assert len(await system.enqueue_batch(mixed_batch())) == 6
