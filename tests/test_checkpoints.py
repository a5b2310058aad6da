"""Durable execution checkpoints (ojs-durable-execution): saved, read and deleted through
the HTTP API and from handlers in a worker group, delivered to the attempt that resumes
a job (after a failure or a lost lease), on real backends (memory, SQLite in a temporary
file, a real Redis). Time runs on trio's autojump clock where the backend allows."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from test_progress import Stored

from ojs_actors import Job, State, open_system
from ojs_actors.backends import EventFilter
from ojs_actors.core import Conflict, NotFound
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.library import current_job
from ojs_actors.system import System
from ojs_actors.system.checkpoints import MAX_CHECKPOINT_BYTES

WAIT_LIMIT_S = 30.0
NO_SUCH_JOB = "01965000-0000-7000-8000-000000000000"
NO_JITTER = {"max_attempts": 3, "initial_interval": "PT1S", "jitter": False}


async def send(client: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    with trio.fail_after(WAIT_LIMIT_S):
        response = await client.open(path, method=method, json=body)
        return response.status_code, await response.get_json()


async def enqueue(client: Any, queue: str = "durable", **options: Any) -> str:
    body = {"type": "data.migrate", "args": [], "options": {"queue": queue, **options}}
    status, reply = await send(client, "POST", "/ojs/v1/jobs", body)
    assert status == 201
    job_id: str = reply["job"]["id"]
    return job_id


async def fetch(client: Any, queue: str = "durable", worker_id: str = "w1") -> list[dict[str, Any]]:
    status, reply = await send(
        client, "POST", "/ojs/v1/workers/fetch", {"queues": [queue], "worker_id": worker_id}
    )
    assert status == 200
    jobs: list[dict[str, Any]] = reply["jobs"]
    return jobs


async def test_save_read_overwrite_delete_over_http(client: Any) -> None:
    job_id = await enqueue(client)
    path = f"/ojs/v1/jobs/{job_id}/checkpoint"
    status, body = await send(client, "GET", path)
    assert status == 404 and body["error"]["code"] == "not_found"

    status, body = await send(client, "POST", path, {"state": {"cursor": "a", "done": 10}})
    assert status == 200
    assert body["sequence"] == 1 and body["checkpoint"]["job_id"] == job_id
    status, body = await send(client, "PUT", path, {"state": {"cursor": "b"}})
    assert body["sequence"] == 2

    status, body = await send(client, "GET", path)
    assert status == 200
    assert body["state"] == {"cursor": "b"}  # replaced, not merged
    assert (body["job_id"], body["sequence"]) == (job_id, 2)
    assert body["checkpoint"]["state"] == {"cursor": "b"}
    assert body["created_at"].endswith("Z")

    status, body = await send(client, "DELETE", path)
    assert status == 200 and body == {"deleted": True, "job_id": job_id}
    status, body = await send(client, "DELETE", path)
    assert status == 200 and body["deleted"] is False  # idempotent
    assert (await send(client, "GET", path))[0] == 404
    status, body = await send(client, "PUT", path, {"state": ["any", "json", None]})
    assert body["sequence"] == 1  # a deleted checkpoint starts over
    assert (await send(client, "GET", path))[1]["state"] == ["any", "json", None]


async def test_unknown_jobs_are_404_and_bad_saves_400(client: Any) -> None:
    path = f"/ojs/v1/jobs/{NO_SUCH_JOB}/checkpoint"
    for method, body in (("GET", None), ("PUT", {"state": {}}), ("DELETE", None)):
        status, reply = await send(client, method, path, body)
        assert status == 404, method
    job_id = await enqueue(client)
    status, reply = await send(client, "PUT", f"/ojs/v1/jobs/{job_id}/checkpoint", {"data": 1})
    assert status == 400 and reply["error"]["details"]["field"] == "state"
    status, reply = await send(
        client, "PUT", f"/ojs/v1/jobs/{job_id}/checkpoint", {"state": 1, "worker_id": 7}
    )
    assert status == 400


async def test_terminal_jobs_take_no_checkpoint_but_keep_theirs(client: Any) -> None:
    job_id = await enqueue(client)
    path = f"/ojs/v1/jobs/{job_id}/checkpoint"
    [job] = await fetch(client)
    await send(client, "PUT", path, {"state": {"at": 3}})
    status, _ = await send(client, "POST", "/ojs/v1/workers/ack", {"job_id": job_id})
    assert status == 200
    status, body = await send(client, "PUT", path, {"state": {"at": 4}})
    assert status == 409 and body["error"]["code"] == "conflict"
    status, body = await send(client, "GET", path)  # as the suite expects (EXT-DUR-020)
    assert status == 200 and body["state"] == {"at": 3}

    cancelled = await enqueue(client, queue="other")
    await send(client, "DELETE", f"/ojs/v1/jobs/{cancelled}")
    status, _ = await send(client, "PUT", f"/ojs/v1/jobs/{cancelled}/checkpoint", {"state": 1})
    assert status == 409


async def test_a_worker_that_lost_the_job_cannot_overwrite_its_checkpoint(client: Any) -> None:
    job_id = await enqueue(client)
    await fetch(client, worker_id="w-owner")
    path = f"/ojs/v1/jobs/{job_id}/checkpoint"
    status, _ = await send(client, "PUT", path, {"state": 1, "worker_id": "w-owner"})
    assert status == 200
    status, body = await send(client, "PUT", path, {"state": 2, "worker_id": "w-stale"})
    assert status == 409
    assert (await send(client, "GET", path))[1]["state"] == 1


async def test_a_checkpoint_over_one_megabyte_is_413(system: System) -> None:
    client = create_app(system, HttpSettings(max_body_bytes=4 * MAX_CHECKPOINT_BYTES)).test_client()
    job_id = await enqueue(client)
    big = {"blob": "x" * MAX_CHECKPOINT_BYTES}
    status, body = await send(client, "PUT", f"/ojs/v1/jobs/{job_id}/checkpoint", {"state": big})
    assert status == 413
    assert body["error"]["details"]["max_bytes"] == MAX_CHECKPOINT_BYTES
    assert (await send(client, "GET", f"/ojs/v1/jobs/{job_id}/checkpoint"))[0] == 404


async def test_the_retried_attempt_is_fetched_with_the_checkpoint(
    client: Any, autojump_clock: Any
) -> None:
    job_id = await enqueue(client, retry=NO_JITTER)
    [first] = await fetch(client)
    assert first["attempt"] == 1 and "checkpoint" not in first  # §6.1: absent at first
    await send(client, "PUT", f"/ojs/v1/jobs/{job_id}/checkpoint", {"state": {"row": 750}})
    nack = {"job_id": job_id, "error": {"message": "connection lost"}}
    assert (await send(client, "POST", "/ojs/v1/workers/nack", nack))[0] == 200
    await trio.sleep(2)
    [second] = await fetch(client, worker_id="w2")
    assert second["id"] == job_id and second["attempt"] == 2
    assert second["checkpoint"] == {"state": {"row": 750}, "sequence": 1}


async def test_a_reclaimed_attempt_resumes_after_a_lost_lease(
    system: System, autojump_clock: Any
) -> None:
    job = await system.enqueue({"type": "t", "args": [], "options": {"queue": "lease"}})
    [claimed] = await system.fetch(["lease"], worker_id="w-dies", visibility_timeout_ms=1000)
    await system.save_checkpoint(job.id, {"page": 7}, worker_id="w-dies")
    with trio.fail_after(WAIT_LIMIT_S):
        [again] = await system.fetch(["lease"], worker_id="w-next", wait=10)
    assert again.id == job.id and again.attempt == 2
    resumed = await system.resume_checkpoints([again])
    assert resumed[job.id].state == {"page": 7}


async def test_checkpoints_on_every_backend(each_system: System) -> None:
    system = each_system
    job = await system.enqueue({"type": "t", "args": [], "options": {"queue": "cp"}})
    other = await system.enqueue({"type": "t", "args": [], "options": {"queue": "cp"}})
    for step in range(1, 4):
        saved = await system.save_checkpoint(job.id, {"step": step})
        assert saved.sequence == step
    await system.save_checkpoint(other.id, "other")
    read = await system.checkpoint(job.id)
    assert (read.state, read.sequence) == ({"step": 3}, 3)
    assert (await system.checkpoint(other.id)).state == "other"
    assert await system.delete_checkpoint(job.id)
    with pytest.raises(NotFound):
        await system.checkpoint(job.id)
    assert (await system.save_checkpoint(job.id, None)).sequence == 1
    events = await system.events(EventFilter(types=frozenset({"job.checkpointed"})))
    assert [(e["subject"], e["data"]["sequence"]) for e in events] == [
        (job.id, 1), (job.id, 2), (job.id, 3), (other.id, 1), (job.id, 1),
    ]  # fmt: skip


async def test_concurrent_saves_each_get_their_own_sequence(each_system: System) -> None:
    system = each_system
    job = await system.enqueue({"type": "t", "args": [], "options": {"queue": "race"}})
    sequences: list[int] = []

    async def save(n: int) -> None:
        sequences.append((await system.save_checkpoint(job.id, {"n": n})).sequence)

    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(save, n)
    assert sorted(sequences) == [1, 2, 3, 4, 5]
    assert (await system.checkpoint(job.id)).sequence == 5


async def test_a_handler_resumes_from_its_checkpoint(autojump_clock: Any) -> None:
    """The first attempt checkpoints half the work and crashes; the retry reads the
    checkpoint through the embedded API and does only the rest."""
    processed: list[int] = []
    async with open_system() as system:

        async def migrate(job: Job) -> int:
            context = current_job()
            saved = await context.last_checkpoint()
            start = saved.state["next"] if saved is not None else 0
            for row in range(start, 10):
                processed.append(row)
                await context.checkpoint({"next": row + 1})
                assert (await context.last_checkpoint()) is not None
                if row == 4 and job.attempt == 1:
                    raise RuntimeError("worker crashed mid-migration")
            await context.clear_checkpoint()
            return len(processed)

        created = await system.enqueue(
            {"type": "data.migrate", "args": [], "options": {"retry": NO_JITTER}}
        )
        stored = Stored()
        async with system.worker_group(["default"], {"data.migrate": migrate}, on_settled=stored):
            await stored.until(created.id, State.COMPLETED)
        done = await system.info(created.id)
        assert done.attempt == 2 and done.result == 10
        assert processed == list(range(10))  # rows 0-4 once, then 5-9: nothing redone
        with pytest.raises(NotFound):
            await system.checkpoint(created.id)


async def test_a_stale_handler_cannot_checkpoint_a_job_claimed_again(system: System) -> None:
    job = await system.enqueue({"type": "t", "args": [], "options": {"queue": "stale"}})
    await system.fetch(["stale"], worker_id="w-new")
    with pytest.raises(Conflict):
        await system.save_checkpoint(job.id, {"x": 1}, worker_id="w-old")


async def test_a_checkpoint_goes_with_its_job_when_the_dead_letter_is_deleted(
    system: System,
) -> None:
    retry = {"max_attempts": 1, "on_exhaustion": "dead_letter"}
    job = await system.enqueue({"type": "t", "args": [], "options": {"retry": retry}})
    await system.fetch(["default"])
    await system.save_checkpoint(job.id, {"at": 1})
    dead = await system.nack(job.id, {"message": "fatal"})
    assert dead.state is State.DISCARDED and dead.dead_letter
    assert (await system.checkpoint(job.id)).state == {"at": 1}  # kept while the job is
    await system.delete_dead_letter(job.id)
    assert await system.backend.load_snapshot(f"checkpoint:{job.id}") is None
