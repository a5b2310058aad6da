"""FIFO hints (``SQS_USE_FIFO``) on moto's server: the queue is a FIFO queue, each hint
carries its message group (the OJS queue) and a de-duplication id (the first job's id
and version), and a job goes enqueue -> fetch -> ack through a FIFO setup."""

from __future__ import annotations

import json
from typing import Any

import trio

from ojs_actors import State, create_backend, open_system
from ojs_actors.backends import open_backend
from ojs_actors.backends.aws.backend import AwsBackend
from ojs_actors.core import lifecycle
from ojs_actors.testing.contract import NOW, make


def _options(aws_options: dict[str, Any]) -> dict[str, Any]:
    names = ("endpoint_url", "region", "table", "queue_prefix")
    return {**{k: aws_options[k] for k in names}, "fifo": True, "timeout": 60}


async def test_a_fifo_hint_has_its_group_and_deduplication_id(aws_options: dict[str, Any]) -> None:
    async with open_backend(AwsBackend(**_options(aws_options))) as backend:
        assert isinstance(backend, AwsBackend)
        jobs = [make(n) for n in range(3)]
        assert await backend.insert_jobs(jobs) == jobs
        url = await backend.hints._urls.url("q")
        assert url.endswith(".fifo")
        attributes = await backend.aws.sqs(
            "get_queue_attributes", QueueUrl=url, AttributeNames=["FifoQueue"]
        )
        assert attributes["Attributes"]["FifoQueue"] == "true"
        answer = await backend.aws.sqs(
            "receive_message", QueueUrl=url, MaxNumberOfMessages=10,
            MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        )  # fmt: skip
        [message] = answer["Messages"]  # one hint for the insert's one write
        assert json.loads(message["Body"]) == {"jobs": [[job.id, job.version] for job in jobs]}
        assert message["Attributes"]["MessageGroupId"] == "q"
        assert message["Attributes"]["MessageDeduplicationId"] == f"{jobs[0].id}-{jobs[0].version}"
        await backend.aws.sqs(
            "delete_message", QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
        )

        # the hint wakes a watcher of the queue; the claim and the ack follow it
        woken = trio.Event()
        backend.hints.know("q")
        more = [make(n) for n in range(3, 5)]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend.watch_ready, lambda queue: woken.set())
            await trio.sleep(0.2)  # the long poll is waiting
            assert await backend.insert_jobs(more) == more
            with trio.fail_after(20):
                await woken.wait()
            nursery.cancel_scope.cancel()
        claimed, _ = await backend.claim("q", 10, NOW + 1, "w", None)
        assert [job.id for job in claimed] == [job.id for job in [*jobs, *more]]
        acked = [lifecycle.ack(job, NOW + 2, None) for job in claimed]
        updates = [(job, old.version) for job, old in zip(acked, claimed, strict=True)]
        assert await backend.update_jobs(updates) == [True] * 5
        stored = await backend.get_jobs([job.id for job in claimed])
        assert all(job is not None and job.state is State.COMPLETED for job in stored)


async def test_a_job_runs_through_a_fifo_setup(aws_options: dict[str, Any]) -> None:
    ran: list[Any] = []
    done = trio.Event()

    async def handler(job: Any) -> str:
        ran.append(job.args)
        done.set()
        return "ok"

    backend = create_backend("sqs", **_options(aws_options))
    async with open_system(backend) as system:
        async with system.worker_group(["fifo-jobs"], {"fifo.test": handler}, concurrency=2):
            job = await system.enqueue(
                {"type": "fifo.test", "args": [7], "options": {"queue": "fifo-jobs"}}
            )
            with trio.fail_after(30):
                await done.wait()
            with trio.fail_after(30):
                while True:
                    [stored] = await system.backend.get_jobs([job.id])
                    if stored is not None and stored.state is State.COMPLETED:
                        break
                    await trio.sleep(0.1)
    assert ran == [[7]]
    assert stored.result == "ok"
