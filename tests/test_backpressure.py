"""Queue bounds (ojs-backpressure) through the HTTP binding, over the real app and System:
``PUT /ojs/v1/admin/queues/{name}/config``, 429 ``QUEUE_FULL`` with its headers, warning
headers past the threshold, a batch refused whole, and the bound kept in the queue's
record (so a process that starts later, or another sharing the backend, applies it)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from app_client import JSON, request
from test_metrics import scrape, value
from trio.testing import MockClock

from ojs_actors.backends import EventFilter, create_backend
from ojs_actors.backends.memory import MemoryBackend
from ojs_actors.core.errors import QueueFull
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import System, open_system
from ojs_actors.system.backpressure import Bound
from ojs_actors.system.queue_size import job_size


async def bound(client: Any, queue: str, **backpressure: Any) -> tuple[int, Any]:
    status, _, body = await request(
        client, "PUT", f"/ojs/v1/admin/queues/{queue}/config", {"backpressure": backpressure}
    )
    return status, body


async def enqueue(client: Any, queue: str) -> tuple[int, Any, Any]:
    job = {"type": "bp.job", "args": [], "options": {"queue": queue}}
    return await request(client, "POST", "/ojs/v1/jobs", job)


async def test_a_full_queue_refuses_enqueues_with_429_and_its_depth(client: Any) -> None:
    assert await bound(client, "bp", max_depth=2, strategy="reject") == (
        200,
        {
            "queue": "bp",
            "backpressure": {"max_depth": 2, "strategy": "reject", "warning_threshold": 0.8},
        },
    )
    assert (await enqueue(client, "bp"))[0] == 201
    assert (await enqueue(client, "bp"))[0] == 201
    status, headers, body = await enqueue(client, "bp")
    assert status == 429
    assert body["error"]["code"] == "QUEUE_FULL"
    assert body["error"]["retryable"] is True
    assert body["error"]["details"] == {
        "queue": "bp", "depth": 2, "bound": 2, "strategy": "reject",
    }  # fmt: skip
    assert headers["Retry-After"] == "1"
    assert headers["X-OJS-Queue-Depth"] == "2"
    assert headers["X-OJS-Queue-Bound"] == "2"
    _, _, stats = await request(client, "GET", "/ojs/v1/queues/bp/stats")
    assert stats["stats"]["depth"] == 2 and stats["stats"]["max_depth"] == 2
    assert stats["stats"]["available"] == 2  # the refused job was not stored


async def test_room_comes_back_when_jobs_finish(client: Any) -> None:
    await bound(client, "bp-room", max_depth=1)
    assert (await enqueue(client, "bp-room"))[0] == 201
    assert (await enqueue(client, "bp-room"))[0] == 429
    _, _, fetched = await request(
        client, "POST", "/ojs/v1/workers/fetch", {"queues": ["bp-room"], "count": 1}
    )
    [job] = fetched["jobs"]
    assert (await enqueue(client, "bp-room"))[0] == 429  # active still counts
    await request(client, "POST", "/ojs/v1/workers/ack", {"job_id": job["id"]})
    assert (await enqueue(client, "bp-room"))[0] == 201


async def test_past_the_warning_threshold_enqueues_carry_the_pressure(client: Any) -> None:
    await bound(client, "bp-warn", max_depth=10, warning_threshold=0.5)
    for _ in range(4):
        _, headers, _ = await enqueue(client, "bp-warn")
        assert "X-OJS-Queue-Pressure" not in headers
    _, headers, _ = await enqueue(client, "bp-warn")  # depth 5 of 10
    assert headers["X-OJS-Queue-Pressure"] == "0.50"
    assert headers["X-OJS-Queue-Depth"] == "5"
    assert headers["X-OJS-Queue-Bound"] == "10"


async def test_a_batch_that_does_not_fit_is_refused_whole(client: Any) -> None:
    await bound(client, "bp-batch", max_depth=2)
    jobs = [{"type": "bp.job", "args": [n], "options": {"queue": "bp-batch"}} for n in range(3)]
    status, headers, body = await request(client, "POST", "/ojs/v1/jobs/batch", {"jobs": jobs})
    assert status == 429 and body["error"]["code"] == "QUEUE_FULL"
    assert headers["X-OJS-Queue-Bound"] == "2"
    _, _, stats = await request(client, "GET", "/ojs/v1/queues/bp-batch/stats")
    assert stats["stats"]["depth"] == 0
    status, _, _ = await request(client, "POST", "/ojs/v1/jobs/batch", {"jobs": jobs[:2]})
    assert status == 201


async def test_a_batch_is_refused_when_a_held_queue_is_full(client: Any) -> None:
    """The batch spans two queues: the full one is the held (not the storing) actor's."""
    await bound(client, "bp-a", max_depth=1)
    jobs = [
        {"type": "bp.job", "args": [], "options": {"queue": "bp-a"}},
        {"type": "bp.job", "args": [], "options": {"queue": "bp-a"}},
        {"type": "bp.job", "args": [], "options": {"queue": "bp-z"}},
    ]
    status, _, body = await request(client, "POST", "/ojs/v1/jobs/batch", {"jobs": jobs})
    assert status == 429 and body["error"]["details"]["queue"] == "bp-a"
    for queue in ("bp-a", "bp-z"):
        _, _, stats = await request(client, "GET", f"/ojs/v1/queues/{queue}/stats")
        assert stats["stats"]["depth"] == 0


async def test_unbounding_and_bad_configs(client: Any) -> None:
    await bound(client, "bp-off", max_depth=1)
    assert (await enqueue(client, "bp-off"))[0] == 201
    assert (await bound(client, "bp-off", max_depth=0))[0] == 200
    assert (await enqueue(client, "bp-off"))[0] == 201
    status, body = await bound(client, "bp-off", max_depth=-1)
    assert status == 400 and body["error"]["details"]["field"] == "backpressure.max_depth"
    status, body = await bound(client, "bp-off", max_depth=5, max_size_bytes=-1)
    assert status == 400 and body["error"]["details"]["field"] == "backpressure.max_size_bytes"
    status, body = await bound(client, "bp-off", max_depth=5, strategy="lifo")
    assert status == 400 and body["error"]["details"]["field"] == "backpressure.strategy"
    status, _, body = await request(client, "PUT", "/ojs/v1/admin/queues/bp-off/config", {})
    assert status == 400


async def test_the_bound_lives_in_the_queue_record_in_the_backend(tmp_path: Any) -> None:
    """A second System over the same store (a restarted or another process) applies the
    bound set through the first."""
    db = str(tmp_path / "bp.db")
    async with open_system(create_backend("sqlite", path=db)) as first:
        await first.limits.set_bound("shared", Bound(1))
        await first.enqueue({"type": "bp.job", "args": [], "options": {"queue": "shared"}})
    async with open_system(create_backend("sqlite", path=db)) as second:
        record = await second.queue_info("shared")
        assert record["backpressure"]["max_depth"] == 1
        with pytest.raises(QueueFull):
            await second.enqueue({"type": "bp.job", "args": [], "options": {"queue": "shared"}})


# -- drop_oldest, block and the backpressure.* events, on memory, SQLite and Redis ------------


@pytest.fixture
def api(each_system: System) -> Any:
    return create_app(each_system, HttpSettings()).test_client()


async def events_of(system: System, *kinds: str) -> list[dict[str, Any]]:
    found = await system.events(EventFilter(types=frozenset(kinds), limit=1000))
    return [event["data"] | {"type": event["type"]} for event in found]


async def enqueue_waiting(client: Any, queue: str, block: str | None) -> tuple[int, Any, float]:
    """An enqueue with ``OJS-Block-Timeout: block``: status, body, trio seconds it took."""
    headers = JSON if block is None else {**JSON, "OJS-Block-Timeout": block}
    job = {"type": "bp.job", "args": [], "options": {"queue": queue}}
    started = trio.current_time()
    with trio.fail_after(120):
        response = await client.open("/ojs/v1/jobs", method="POST", json=job, headers=headers)
        body = await response.get_json()
    return response.status_code, body, trio.current_time() - started


async def state_of(client: Any, job_id: str) -> str:
    _, _, body = await request(client, "GET", f"/ojs/v1/jobs/{job_id}")
    return str(body["job"]["state"])


async def test_drop_oldest_discards_the_oldest_waiting_jobs_to_make_room(
    api: Any, each_system: System
) -> None:
    await bound(api, "bp-d", max_depth=3, strategy="drop_oldest")
    ids = [(await enqueue(api, "bp-d"))[2]["job"]["id"] for _ in range(3)]
    _, _, fetched = await request(
        api, "POST", "/ojs/v1/workers/fetch", {"queues": ["bp-d"], "count": 1}
    )
    assert fetched["jobs"][0]["id"] == ids[0]  # active: never dropped
    status, _, newest = await enqueue(api, "bp-d")
    assert status == 201
    assert [await state_of(api, job_id) for job_id in ids] == ["active", "discarded", "available"]
    _, _, dropped = await request(api, "GET", f"/ojs/v1/jobs/{ids[1]}")
    assert dropped["job"]["error"]["code"] == "backpressure_dropped"
    assert dropped["job"]["attempt"] == 0
    jobs = [{"type": "bp.job", "args": [n], "options": {"queue": "bp-d"}} for n in range(2)]
    status, _, _ = await request(api, "POST", "/ojs/v1/jobs/batch", {"jobs": jobs})
    assert status == 201  # room for the whole batch (§9.3)
    assert await state_of(api, ids[2]) == "discarded"
    assert await state_of(api, newest["job"]["id"]) == "discarded"
    _, _, stats = await request(api, "GET", "/ojs/v1/queues/bp-d/stats")
    assert stats["stats"]["depth"] == 3
    events = await events_of(each_system, "backpressure.dropped")
    assert events == [
        {"type": "backpressure.dropped", "queue": "bp-d", "job_id": job_id, "job_type": "bp.job"}
        for job_id in (ids[1], ids[2], newest["job"]["id"])
    ]


async def test_drop_oldest_refuses_what_dropping_cannot_make_room_for(api: Any) -> None:
    await bound(api, "bp-da", max_depth=1, strategy="drop_oldest")
    assert (await enqueue(api, "bp-da"))[0] == 201
    await request(api, "POST", "/ojs/v1/workers/fetch", {"queues": ["bp-da"], "count": 1})
    status, _, body = await enqueue(api, "bp-da")  # only an active job fills it
    assert status == 429 and body["error"]["details"]["strategy"] == "drop_oldest"
    jobs = [{"type": "bp.job", "args": [n], "options": {"queue": "bp-da"}} for n in range(2)]
    status, _, _ = await request(api, "POST", "/ojs/v1/jobs/batch", {"jobs": jobs})
    assert status == 429  # larger than the bound itself


async def test_block_waits_for_room_then_takes_the_job(
    api: Any, each_system: System, each_clock: MockClock
) -> None:
    await bound(api, "bp-b", max_depth=1, strategy="block")
    _, _, first = await enqueue(api, "bp-b")
    result: list[tuple[int, Any, float]] = []
    async with trio.open_nursery() as nursery:

        async def blocked() -> None:
            result.append(await enqueue_waiting(api, "bp-b", "30"))

        nursery.start_soon(blocked)
        await trio.sleep(5)
        assert result == []  # still waiting
        _, _, fetched = await request(
            api, "POST", "/ojs/v1/workers/fetch", {"queues": ["bp-b"], "count": 1}
        )
        await request(api, "POST", "/ojs/v1/workers/ack", {"job_id": fetched["jobs"][0]["id"]})
    [(status, body, took)] = result
    assert status == 201 and body["job"]["state"] == "available"
    assert 5 <= took
    if isinstance(each_system.backend, MemoryBackend):  # time exact: no store idles it
        assert took < 5.5  # woken by the ack, not by the next look
    assert await events_of(each_system, "backpressure.rejected") == []


async def test_block_answers_429_when_no_room_comes(
    api: Any, each_system: System, each_clock: MockClock
) -> None:
    await bound(api, "bp-bt", max_depth=1, strategy="block")
    await enqueue(api, "bp-bt")
    status, body, took = await enqueue_waiting(api, "bp-bt", None)
    assert status == 429  # no header: no wait (§5.2 default 0)
    if isinstance(each_system.backend, MemoryBackend):  # time exact: no store idles it
        assert took == 0
    assert body["error"]["details"]["strategy"] == "block"
    status, body, took = await enqueue_waiting(api, "bp-bt", "2.5")
    assert status == 429 and 2.5 <= took < 10
    status, body, _ = await enqueue_waiting(api, "bp-bt", "forever")
    assert status == 400 and body["error"]["details"]["header"] == "OJS-Block-Timeout"
    rejected = await events_of(each_system, "backpressure.rejected")
    assert rejected == [
        {"type": "backpressure.rejected", "queue": "bp-bt", "depth": 1, "bound": 1, "job_type": "bp.job"}
    ] * 2  # fmt: skip
    assert value(await scrape(api), "ojs_backpressure_rejected_total", queue="bp-bt") == 2


async def test_refusals_drops_and_pressure_are_metrics(api: Any, each_system: System) -> None:
    """ojs-backpressure §10.2, per queue as this process counted them: enqueues refused,
    jobs dropped under ``drop_oldest``, and the depth over the bound."""
    await bound(api, "bp-m", max_depth=4)
    for _ in range(3):
        await enqueue(api, "bp-m")
    samples = await scrape(api)
    assert value(samples, "ojs_backpressure_pressure", queue="bp-m") == 0.75
    assert value(samples, "ojs_backpressure_rejected_total", queue="bp-m") == 0
    await enqueue(api, "bp-m")
    for _ in range(2):
        assert (await enqueue(api, "bp-m"))[0] == 429
    await bound(api, "bp-md", max_depth=1, strategy="drop_oldest")
    for _ in range(3):
        assert (await enqueue(api, "bp-md"))[0] == 201
    samples = await scrape(api)
    assert value(samples, "ojs_backpressure_rejected_total", queue="bp-m") == 2
    assert value(samples, "ojs_backpressure_pressure", queue="bp-m") == 1.0
    assert value(samples, "ojs_backpressure_dropped_total", queue="bp-md") == 2
    assert value(samples, "ojs_backpressure_dropped_total", queue="bp-m") is None
    assert value(samples, "ojs_backpressure_pressure", queue="bp-md") == 1.0


async def test_rejections_and_threshold_crossings_are_events(api: Any, each_system: System) -> None:
    await bound(api, "bp-e", max_depth=4, warning_threshold=0.5)
    for _ in range(4):
        await enqueue(api, "bp-e")
    assert (await enqueue(api, "bp-e"))[0] == 429
    _, _, fetched = await request(
        api, "POST", "/ojs/v1/workers/fetch", {"queues": ["bp-e"], "count": 4}
    )
    for job in fetched["jobs"]:
        await request(api, "POST", "/ojs/v1/workers/ack", {"job_id": job["id"]})
    assert (await enqueue(api, "bp-e"))[0] == 201  # depth 1 of 4: below the threshold again
    events = await events_of(
        each_system, "backpressure.warning", "backpressure.rejected", "backpressure.cleared"
    )
    assert events == [
        {"type": "backpressure.warning", "queue": "bp-e", "depth": 2, "bound": 4},
        {"type": "backpressure.rejected", "queue": "bp-e", "depth": 4, "bound": 4, "job_type": "bp.job"},
        {"type": "backpressure.cleared", "queue": "bp-e", "depth": 1, "bound": 4},
    ]  # fmt: skip


# -- max_size_bytes: the queue's total job size, on memory, SQLite and Redis ----------------


async def sized_queue(api: Any, system: System, queue: str, jobs: float, **config: Any) -> int:
    """Bound ``queue`` to ``jobs`` times the size of one of its jobs; that size."""
    status, _, body = await enqueue(api, "bp-measure")
    assert status == 201
    size = job_size(await system.info(body["job"]["id"]))
    status, reply = await bound(api, queue, max_size_bytes=int(size * jobs), **config)
    assert status == 200 and reply["backpressure"]["max_size_bytes"] == int(size * jobs)
    return size


async def test_a_size_bound_refuses_enqueues_past_it_with_429(
    api: Any, each_system: System, each_clock: MockClock
) -> None:
    size = await sized_queue(api, each_system, "bp-s", 2.5, warning_threshold=0.5)
    status, headers, _ = await enqueue(api, "bp-s")
    assert status == 201 and "X-OJS-Queue-Pressure" not in headers  # 1 of 2.5 jobs
    status, headers, _ = await enqueue(api, "bp-s")
    assert status == 201 and 0.75 <= float(headers["X-OJS-Queue-Pressure"]) <= 0.85
    assert headers["X-OJS-Queue-Size-Bound"] == str(int(size * 2.5))
    status, headers, body = await enqueue(api, "bp-s")
    assert status == 429 and body["error"]["code"] == "QUEUE_FULL"
    details = body["error"]["details"]
    assert details["depth"] == 2 and details["max_size_bytes"] == int(size * 2.5)
    assert 2 * size - 50 <= details["size_bytes"] <= 2 * size + 50
    assert headers["Retry-After"] == "1" and headers["X-OJS-Queue-Depth"] == "2"
    assert headers["X-OJS-Queue-Size-Bytes"] == str(details["size_bytes"])
    assert "X-OJS-Queue-Bound" not in headers  # no depth bound
    _, _, stats = await request(api, "GET", "/ojs/v1/queues/bp-s/stats")
    assert stats["stats"]["max_size_bytes"] == int(size * 2.5) and stats["stats"]["depth"] == 2
    _, _, fetched = await request(
        api, "POST", "/ojs/v1/workers/fetch", {"queues": ["bp-s"], "count": 1}
    )
    await request(api, "POST", "/ojs/v1/workers/ack", {"job_id": fetched["jobs"][0]["id"]})
    await trio.sleep(1.1)  # the recount of the queue's size: at most every poll interval
    assert (await enqueue(api, "bp-s"))[0] == 201
    rejected = await events_of(each_system, "backpressure.rejected")
    assert [e["queue"] for e in rejected] == ["bp-s"]


async def test_a_size_bound_with_a_depth_bound_the_first_reached_refuses(
    api: Any, each_system: System
) -> None:
    await sized_queue(api, each_system, "bp-sd", 10, max_depth=1)
    assert (await enqueue(api, "bp-sd"))[0] == 201
    status, headers, body = await enqueue(api, "bp-sd")
    assert status == 429 and headers["X-OJS-Queue-Bound"] == "1"
    jobs = [{"type": "bp.job", "args": ["x" * 2000], "options": {"queue": "bp-sz"}}]
    await sized_queue(api, each_system, "bp-sz", 5, max_depth=100)
    status, _, body = await request(api, "POST", "/ojs/v1/jobs/batch", {"jobs": jobs})
    assert status == 429 and "size_bytes" in body["error"]["details"]  # one job too big


async def test_drop_oldest_makes_room_by_size(api: Any, each_system: System) -> None:
    await sized_queue(api, each_system, "bp-sdrop", 2.5, strategy="drop_oldest")
    ids = [(await enqueue(api, "bp-sdrop"))[2]["job"]["id"] for _ in range(2)]
    status, _, newest = await enqueue(api, "bp-sdrop")
    assert status == 201
    assert [await state_of(api, job_id) for job_id in ids] == ["discarded", "available"]
    big = {"type": "bp.job", "args": ["x" * 5000], "options": {"queue": "bp-sdrop"}}
    status, _, _ = await request(api, "POST", "/ojs/v1/jobs", big)
    assert status == 429  # larger than the bound: nothing dropped for it
    assert await state_of(api, newest["job"]["id"]) == "available"
