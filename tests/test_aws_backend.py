"""The AWS backend on moto's server: the backend contract, and what is its own (atomic
batches larger than one DynamoDB transaction)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ojs_actors.backends import EventFilter, open_backend
from ojs_actors.backends.aws.backend import AwsBackend
from ojs_actors.backends.aws.intents import REPAIR_AFTER_MS
from ojs_actors.backends.codec import dumps_record
from ojs_actors.core import Duplicate, State
from ojs_actors.testing.contract import NOW, BackendContract, BackendFactory, make

_prefixes = itertools.count()


class TestAwsBackend(BackendContract):
    @pytest.fixture
    def backend_factory(self, aws_options: dict[str, Any]) -> BackendFactory:
        """Each backend of a test its own key prefix in the test's table."""
        table = {k: aws_options[k] for k in ("endpoint_url", "region", "table")}

        def factory(**options: Any) -> Any:
            prefix = f"b{next(_prefixes)}:"
            # moto's transactions slow down as a table grows (it copies it for each):
            # the long-log test's take seconds, far beyond real DynamoDB's
            return open_backend(AwsBackend(**table, prefix=prefix, timeout=60, **options))

        return factory


@pytest.fixture
async def aws(aws_options: dict[str, Any]) -> AsyncIterator[AwsBackend]:
    table = {k: aws_options[k] for k in ("endpoint_url", "region", "table", "queue_prefix")}
    async with open_backend(AwsBackend(**table)) as backend:
        assert isinstance(backend, AwsBackend)
        yield backend


async def test_an_atomic_batch_larger_than_a_transaction_is_stored_whole(aws: AwsBackend) -> None:
    jobs = [make(n) for n in range(100)]  # some 300 items: three transactions and more
    results = await aws.insert_jobs(jobs, atomic=True)
    assert results == jobs
    claimed, _ = await aws.claim("q", 100, NOW + 1, "w", None)
    assert [job.args[0] for job in claimed] == list(range(100))  # FIFO across the parts
    events = await aws.read_events(EventFilter(limit=1000))
    assert [e["data"]["job_id"] for e in events[:100]] == [job.id for job in jobs]
    intents = await aws.aws.dynamodb(
        "query", TableName=aws.table, KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": aws.keys.key("batch")["pk"]},
    )  # fmt: skip
    assert intents["Items"] == []  # the intent is gone once its jobs are stored


async def test_an_atomic_batch_with_a_taken_id_stores_nothing(aws: AwsBackend) -> None:
    [first] = await aws.insert_jobs([make(0)])
    jobs = [make(n) for n in range(1, 60)]
    jobs[30].id = first.id
    results = await aws.insert_jobs(jobs, atomic=True)
    assert isinstance(results[30], Duplicate)
    assert await aws.count_jobs("q") == {State.AVAILABLE: 1}


async def test_a_batch_whose_writer_died_is_finished_by_the_scheduler(aws: AwsBackend) -> None:
    """The crash window of an atomic batch: its intent stored, some of its jobs written
    (``aws.batch.intent``); a later look of the scheduler writes the rest, once."""
    jobs = [make(n) for n in range(40)]
    await aws.insert_jobs(jobs[:10])  # materialized before the crash
    records = {"L": [{"S": dumps_record(job.to_record())} for job in jobs]}
    intent = aws.keys.key("batch", "crashed")
    await aws.aws.dynamodb(
        "put_item", TableName=aws.table, Item={**intent, "recs": records, "at": {"N": "1"}}
    )
    now = REPAIR_AFTER_MS + 10
    await aws.due_jobs(now, 10)
    claimed, _ = await aws.claim("q", 100, now, "w", None)
    assert sorted(job.args[0] for job in claimed) == list(range(40))  # each once
    assert await aws.count_jobs("q") == {State.ACTIVE: 40}
    assert (await aws.aws.dynamodb("get_item", TableName=aws.table, Key=intent)).get("Item") is None
