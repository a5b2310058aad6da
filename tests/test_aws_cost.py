"""The AWS cost scenario's accounting (``bench/_aws_units.py``) and its moto fixes
(:mod:`ojs_actors.testing.moto`, which the tests' moto runs too).

Covered here:

- DynamoDB's size and request-unit rules;
- the meter's counts, checked against ``AwsClients.requests`` for a real lifecycle
  on moto;
- the bench's moto, which still rolls a refused transaction back whole.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bench._aws_cost import TARGET_REQUESTS_PER_JOB, measure_embedded
from bench._aws_units import (
    PRICES,
    Usage,
    UsageMeter,
    attribute_size,
    item_size,
    mean_transaction_items,
    number_size,
    operation_name,
    per_unit,
    read_units,
    sqs_billed,
    write_units,
)
from ojs_actors.backends import open_backend
from ojs_actors.backends.aws.backend import AwsBackend
from ojs_actors.backends.aws.client import AwsClients, AwsSettings
from ojs_actors.backends.aws.setup import ensure_table
from ojs_actors.core import lifecycle
from ojs_actors.testing.contract import NOW, make
from ojs_actors.testing.services import SerialMotoServer

# -- DynamoDB's rules ----------------------------------------------------------------------------


def test_numbers_are_a_byte_per_two_significant_digits_plus_one() -> None:
    assert number_size("7") == 2
    assert number_size("123456") == 4
    assert number_size("1000") == 2  # trailing zeros trimmed
    assert number_size("-0.0050") == 2
    assert number_size("1234567") == 5


def test_item_size_adds_names_and_values() -> None:
    item = {"pk": {"S": "job#abc"}, "sk": {"S": "#"}, "v": {"N": "3"}}
    assert item_size(item) == (2 + 7) + (2 + 1) + (1 + 2)
    assert attribute_size({"S": "é"}) == 2  # UTF-8 bytes
    assert attribute_size({"L": [{"S": "ab"}, {"N": "1"}]}) == 3 + (1 + 2) + (1 + 2)
    assert attribute_size({"M": {"k": {"BOOL": True}}}) == 3 + 1 + 1 + 1
    assert attribute_size({"NS": ["1", "22"]}) == 2 + 2


def test_units_round_up_and_transactions_cost_double() -> None:
    assert write_units(0) == 1 and write_units(1024) == 1 and write_units(1025) == 2
    assert write_units(1025, transactional=True) == 4
    assert read_units(0) == 1 and read_units(4096) == 1 and read_units(4097) == 2
    assert read_units(100, consistent=False) == 0.5
    assert sqs_billed(0) == 1 and sqs_billed(65536) == 1 and sqs_billed(65537) == 2


def test_operation_names_are_botocores() -> None:
    assert operation_name("transact_write_items") == "TransactWriteItems"
    assert operation_name("batch_get_item") == "BatchGetItem"
    assert operation_name("get_queue_url") == "GetQueueUrl"


def test_prices_per_million() -> None:
    assert PRICES.dollars(1e6, 0, 0) == pytest.approx(0.625)
    assert PRICES.dollars(0, 1e6, 0) == pytest.approx(0.125)
    assert PRICES.dollars(0, 0, 1e6) == pytest.approx(0.40)


# -- the meter, on a stand-in client --------------------------------------------------------------


class FakeAws:
    """The three call methods of ``AwsClients`` with canned answers; ``requests`` counts
    attempts as botocore's hook would (``retry`` makes the next call two attempts)."""

    def __init__(self, answers: dict[str, dict[str, Any]]) -> None:
        self.answers = answers
        self.requests: Counter[str] = Counter()
        self.retry = False

    def _answer(self, service: str, operation: str) -> dict[str, Any]:
        name = f"{service}.{operation_name(operation)}"
        self.requests[name] += 2 if self.retry else 1
        self.retry = False
        return self.answers.get(name, {})

    async def dynamodb(self, operation: str, **parameters: Any) -> dict[str, Any]:
        return self._answer("dynamodb", operation)

    async def sqs(self, operation: str, **parameters: Any) -> dict[str, Any]:
        return self._answer("sqs", operation)

    async def sqs_long_poll(self, **parameters: Any) -> dict[str, Any]:
        return self._answer("sqs", "receive_message")


def _key(pk: str, sk: str = "#") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


async def test_the_meter_charges_items_by_their_stored_size() -> None:
    big = {**_key("job#1"), "rec": {"S": "x" * 2000}}  # 2 KB: 2 units, 4 in a transaction
    aws = FakeAws(
        {
            "dynamodb.BatchGetItem": {"Responses": {"t": [big]}},
            "dynamodb.Query": {"Items": [_key("ready#q", "a"), _key("ready#q", "b")]},
            "sqs.ReceiveMessage": {"Messages": [{"Body": "{}"}] * 10},
        }
    )
    meter = UsageMeter(aws)
    start = meter.snapshot()
    await aws.dynamodb("put_item", TableName="t", Item=big)  # 2 WRU
    await aws.dynamodb(
        "transact_write_items",
        TransactItems=[
            {"Put": {"TableName": "t", "Item": {**_key("job#2"), "v": {"N": "1"}}}},  # 2
            {"Delete": {"TableName": "t", "Key": _key("job#1")}},  # stored 2 KB: 4
            {
                "Update": {
                    "TableName": "t",
                    "Key": _key("count#q"),
                    "UpdateExpression": "ADD a :d",
                    "ExpressionAttributeValues": {":d": {"N": "1"}},
                }
            },  # fmt: skip  # 2
        ],
    )
    await aws.dynamodb(
        "batch_get_item",
        RequestItems={"t": {"Keys": [_key("job#1"), _key("job#9")], "ConsistentRead": True}},
    )  # 1 RRU each, the missing one too
    await aws.dynamodb("query", TableName="t", ConsistentRead=True)  # tiny items: 1 RRU
    aws.retry = True
    await aws.sqs("send_message_batch", QueueUrl="u",
                  Entries=[{"Id": str(n), "MessageBody": "{}"} for n in range(10)])  # fmt: skip
    await aws.sqs_long_poll(QueueUrl="u", WaitTimeSeconds=20)
    usage = meter.snapshot().minus(start)

    assert usage.calls == Counter({
        "dynamodb.PutItem": 1, "dynamodb.TransactWriteItems": 1, "dynamodb.BatchGetItem": 1,
        "dynamodb.Query": 1, "sqs.SendMessageBatch": 1, "sqs.ReceiveMessage": 1,
    })  # fmt: skip
    assert usage.total_requests() == usage.total_calls() + 1  # the retry is an attempt more
    assert usage.wru == Counter({"dynamodb.PutItem": 2, "dynamodb.TransactWriteItems": 2 + 4 + 2})
    assert usage.rru == Counter({"dynamodb.BatchGetItem": 2, "dynamodb.Query": 1})
    assert usage.sqs_billed == Counter({"sqs.SendMessageBatch": 1, "sqs.ReceiveMessage": 1})
    assert (usage.transactions, usage.transaction_items) == (1, 3)
    assert mean_transaction_items(usage) == 3
    figures = per_unit(usage, 2)
    assert figures["calls"] == 3 and figures["wru"] == 5 and figures["sqs_billed"] == 1
    assert figures["dollars"] == pytest.approx(PRICES.dollars(10, 3, 2) / 2)
    assert Usage.from_dict(usage.as_dict()) == usage


async def test_a_refused_call_is_counted_and_raised() -> None:
    class Refusing(FakeAws):
        async def dynamodb(self, operation: str, **parameters: Any) -> dict[str, Any]:
            self._answer("dynamodb", operation)
            raise ClientError({"Error": {"Code": "TransactionCanceledException"}}, operation)

    aws = Refusing({})
    meter = UsageMeter(aws)
    with pytest.raises(ClientError):
        await aws.dynamodb("transact_write_items", TransactItems=[
            {"Put": {"TableName": "t", "Item": _key("job#1")}}])  # fmt: skip
    usage = meter.snapshot()
    assert usage.failed_calls == Counter({"dynamodb.TransactWriteItems": 1})
    assert usage.wru["dynamodb.TransactWriteItems"] == 2  # a refused write is billed too


# -- on moto: the meter sees every request the backend sends ---------------------------------------


async def test_the_meter_counts_what_the_backend_sends(aws_options: dict[str, Any]) -> None:
    table = {k: aws_options[k] for k in ("endpoint_url", "region", "table", "queue_prefix")}
    async with open_backend(AwsBackend(**table, timeout=60)) as backend:
        assert isinstance(backend, AwsBackend)
        meter = UsageMeter(backend.aws)
        before = meter.snapshot()
        jobs = [make(n) for n in range(20)]
        assert await backend.insert_jobs(jobs) == jobs
        claimed, _ = await backend.claim("q", 20, NOW + 1, "w", None)
        assert len(claimed) == 20
        done = [lifecycle.ack(job, NOW + 2, None) for job in claimed]
        assert (
            await backend.update_jobs(
                [(job, old.version) for job, old in zip(done, claimed, strict=True)]
            )
            == [True] * 20
        )
        usage = meter.snapshot().minus(before)
    # every request the backend sent (botocore's count) went through the meter, once
    assert usage.requests == usage.calls
    assert usage.calls["dynamodb.TransactWriteItems"] == usage.transactions >= 3
    # 20 new jobs: each its item, ready entry, outbox entry and its key item, in one
    # transaction with the count and the outbox counter; then claims and acks
    assert usage.transaction_items >= 20 * 4 + 2 + 20 * 3
    assert usage.total_wru >= 2 * usage.transaction_items  # every item at least 2 WRU
    assert usage.calls["sqs.SendMessage"] == 1  # one hint for the insert's one write
    assert not math.isnan(per_unit(usage, 20)["dollars"])


async def test_a_batch_lifecycle_takes_a_quarter_request_per_job(
    aws_options: dict[str, Any],
) -> None:
    """100 jobs enqueued at once, claimed at once and acked at once: each step in as few
    requests as DynamoDB's limits allow (100 items a transaction, 100 keys a read), the
    ack with no read first (the claim's versions are known) and its lease timers deleted
    in the ack's transactions, one hint per write."""
    table = {k: aws_options[k] for k in ("endpoint_url", "region", "table", "queue_prefix")}
    async with open_backend(AwsBackend(**table, timeout=60)) as backend:
        assert isinstance(backend, AwsBackend)
        meter = UsageMeter(backend.aws)
        jobs = [make(n) for n in range(100)]
        start = meter.snapshot()
        assert await backend.insert_jobs(jobs, atomic=True) == jobs
        enqueued = meter.snapshot()
        claimed, _ = await backend.claim("q", 100, NOW + 1, "w", None)
        assert [job.args[0] for job in claimed] == list(range(100))
        leased = meter.snapshot()
        done = [lifecycle.ack(job, NOW + 2, None) for job in claimed]
        updates = [(job, old.version) for job, old in zip(done, claimed, strict=True)]
        assert await backend.update_jobs(updates) == [True] * 100
        acked = meter.snapshot()
        timers = [
            await backend.aws.dynamodb_items(
                "query", TableName=backend.table, KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": backend.keys.timer_partition(shard)}},
                ConsistentRead=True,
            )
            for shard in range(4)
        ]  # fmt: skip
    insert = enqueued.minus(start).calls
    once = Counter({"dynamodb.GetItem": 1, "sqs.CreateQueue": 1})  # a process's first write,
    # a queue's first hint: the outbox counter read, the SQS queue made (or found)
    # the ids checked, the intent, 5 transactions of up to 24 jobs (4 items each), the
    # intent deleted; one hint per transaction
    assert insert == once + Counter({
        "dynamodb.BatchGetItem": 1, "dynamodb.PutItem": 1, "dynamodb.TransactWriteItems": 5,
        "dynamodb.DeleteItem": 1, "sqs.SendMessage": 5,
    })  # fmt: skip
    claim = leased.minus(enqueued).calls
    # one Query and one read of the 100, then 6 transactions of up to 19 claims
    assert claim == Counter(
        {"dynamodb.Query": 1, "dynamodb.BatchGetItem": 1, "dynamodb.TransactWriteItems": 6}
    )
    ack = acked.minus(leased).calls
    assert ack == Counter({"dynamodb.TransactWriteItems": 5})  # no read, no later delete
    assert timers == [[]] * 4  # every lease timer went with its ack
    total = acked.minus(start).total_calls() - once.total()
    assert total / 100 == 0.26  # against 6-7 for the reference's design


# -- steady state, as the bench measures it --------------------------------------------------------


async def test_steady_state_costs_at_most_one_request_per_job(
    bench_moto: SerialMotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's target, measured as ``python -m bench --only aws_cost`` does (a
    smaller run): a stream of batch enqueues while a worker group claims and acks, every
    request the process sends in the window counted (hints received and deleted, the
    scheduler's and fetchers' polls included): at most 1 per job."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    result = await measure_embedded(
        bench_moto.url, jobs=400, warmup_jobs=200, idle_s=0.5, timeout_s=240
    )
    assert result["ok"], result
    window = result["window"]
    figures = per_unit(Usage.from_dict(window["usage"]), window["jobs"])
    assert figures["calls"] <= TARGET_REQUESTS_PER_JOB, figures["calls_by_operation"]


# -- the bench's moto --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SerialMotoServer]:
    with SerialMotoServer(tmp_path_factory.mktemp("bench-moto")) as server:
        yield server


async def test_bench_moto_rolls_a_refused_transaction_back_whole(
    bench_moto: SerialMotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = AwsSettings(region="us-east-1", endpoint_url=bench_moto.url)
    async with AwsClients(settings).opened() as aws:
        await ensure_table(aws, "rollback")

        async def get(pk: str) -> dict[str, Any] | None:
            found = await aws.dynamodb("get_item", TableName="rollback", Key=_key(pk),
                                       ConsistentRead=True)  # fmt: skip
            item: dict[str, Any] | None = found.get("Item")
            return item

        kept = {**_key("a"), "v": {"N": "1"}}
        await aws.dynamodb("put_item", TableName="rollback", Item=kept)
        with pytest.raises(ClientError) as refused:
            await aws.dynamodb("transact_write_items", TransactItems=[
                {"Put": {"TableName": "rollback", "Item": {**_key("b"), "v": {"N": "1"}}}},
                {"Delete": {"TableName": "rollback", "Key": _key("a")}},
                {"Update": {"TableName": "rollback", "Key": _key("c"), "UpdateExpression": "SET v = :v",
                            "ExpressionAttributeValues": {":v": {"N": "5"}}}},
                {"Put": {"TableName": "rollback", "Item": {**_key("d"), "v": {"N": "2"}},
                         "ConditionExpression": "attribute_exists(pk)"}},
            ])  # fmt: skip
        reasons = [r["Code"] for r in refused.value.response["CancellationReasons"]]
        assert reasons == ["None", "None", "None", "ConditionalCheckFailed"]
        assert await get("a") == kept  # the delete undone
        assert await get("b") is None and await get("c") is None and await get("d") is None

        await aws.dynamodb("transact_write_items", TransactItems=[
            {"Put": {"TableName": "rollback", "Item": {**_key("b"), "v": {"N": "1"}}}},
            {"Update": {"TableName": "rollback", "Key": _key("a"), "UpdateExpression": "SET v = :v",
                        "ConditionExpression": "v = :one",
                        "ExpressionAttributeValues": {":v": {"N": "2"}, ":one": {"N": "1"}}}},
        ])  # fmt: skip
        assert await get("b") == {**_key("b"), "v": {"N": "1"}}
        assert await get("a") == {**_key("a"), "v": {"N": "2"}}
