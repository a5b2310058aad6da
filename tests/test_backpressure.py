"""Queue bounds (ojs-backpressure) through the HTTP binding, over the real app and System:
``PUT /ojs/v1/admin/queues/{name}/config``, 429 ``QUEUE_FULL`` with its headers, warning
headers past the threshold, a batch refused whole, and the bound kept in the queue's
record (so a process that starts later, or another sharing the backend, applies it)."""

from __future__ import annotations

from typing import Any

import pytest
from app_client import request

from ojs_actors.backends import create_backend
from ojs_actors.core.errors import QueueFull
from ojs_actors.system import open_system
from ojs_actors.system.backpressure import Bound


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
    status, body = await bound(client, "bp-off", max_depth=5, strategy="drop_oldest")
    assert status == 422 and body["error"]["code"] == "unsupported"
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
