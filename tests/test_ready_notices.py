"""Ready notices (the optional ``ReadyNotices`` part) on every backend that has them: a
write that makes jobs available tells every process sharing the store, so a fetch waiting
in one process starts work enqueued through another at once, not at its next poll (on
sqs: the SQS hints it long-polls)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio

from ojs_actors import open_system
from ojs_actors.backends import Backend, ReadyNotices, open_backend
from ojs_actors.backends.aws.backend import AwsBackend
from ojs_actors.backends.nats import NatsBackend
from ojs_actors.backends.redis import RedisBackend
from ojs_actors.core import Job, State, lifecycle
from ojs_actors.system import Settings

NewBackend = Callable[[], Backend]


def backends_on_one_store(request: pytest.FixtureRequest, name: str) -> NewBackend:
    """Makes backend objects on one store, as several processes would."""
    if name == "redis":
        url: str = request.getfixturevalue("redis_url")
        return lambda: RedisBackend(url)
    if name == "sqs":
        options: dict[str, Any] = request.getfixturevalue("aws_options")
        return lambda: AwsBackend(**options)
    options = request.getfixturevalue("nats_options")
    return lambda: NatsBackend(**options)


@pytest.fixture(params=["redis", "nats"])
def new_backend(request: pytest.FixtureRequest) -> NewBackend:
    """Backends whose notices come one per write (SQS's come as they are received)."""
    return backends_on_one_store(request, request.param)


@pytest.fixture(params=["redis", "nats", "sqs"])
def any_new_backend(request: pytest.FixtureRequest) -> NewBackend:
    return backends_on_one_store(request, request.param)


@pytest.fixture
async def backend(new_backend: NewBackend) -> AsyncIterator[Backend]:
    async with open_backend(new_backend()) as store:
        yield store


def make(job_id: str, *, queue: str = "q", **fields: Any) -> Job:
    fields.setdefault("created_at", 1_000)
    fields.setdefault("enqueued_at", fields["created_at"])
    return Job(id=job_id, type="t", args=[], queue=queue, **fields)


async def test_ready_notices_name_the_queues_that_got_available_jobs(backend: Backend) -> None:
    assert isinstance(backend, ReadyNotices)
    notices: list[str] = []
    heard = trio.Event()

    def notify(queue: str) -> None:
        notices.append(queue)
        if len(notices) == 3:
            heard.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(backend.watch_ready, notify)
        await trio.sleep(0.1)  # subscribed
        later = make("later", queue="s", state=State.SCHEDULED, scheduled_at=10**13)
        await backend.insert_jobs([make("a1", queue="a"), make("a2", queue="a"), later])
        [active], _ = await backend.claim("a", 1, 2_000, "w", None)
        await backend.update_jobs([(lifecycle.requeue(active, 3_000), active.version)])
        await backend.update_jobs([(lifecycle.promote(later, 4_000), later.version)])
        with trio.fail_after(5):
            await heard.wait()
        nursery.cancel_scope.cancel()
    # one notice per write and queue: the insert (a), the requeue (a), the promotion (s);
    # the scheduled insert and the claim made nothing available
    assert notices == ["a", "a", "s"]


async def test_a_fetch_waiting_in_one_process_wakes_for_work_enqueued_through_another(
    any_new_backend: NewBackend,
) -> None:
    """Two systems on one store, as two processes are: the waiting fetch hears of the job
    at once, not at its next poll (ten seconds here)."""
    slow_polls = Settings(poll_interval=10.0)
    async with (
        open_system(any_new_backend(), settings=slow_polls) as producer,
        open_system(any_new_backend(), settings=slow_polls) as consumer,
        trio.open_nursery() as nursery,
    ):
        fetched: list[Job] = []
        done = trio.Event()

        async def fetch() -> None:
            fetched.extend(await consumer.fetch(["wake"], worker_id="w", wait=9.0))
            done.set()

        await producer.enqueue({"type": "t", "args": [], "options": {"queue": "wake"}})
        await consumer.ack((await consumer.fetch(["wake"], worker_id="w"))[0].id)
        nursery.start_soon(fetch)
        await trio.sleep(0.2)  # the fetch found nothing and waits
        started = trio.current_time()
        job = await producer.enqueue({"type": "t", "args": [1], "options": {"queue": "wake"}})
        with trio.fail_after(3):
            await done.wait()
        assert [j.id for j in fetched] == [job.id]
        assert trio.current_time() - started < 2.0
