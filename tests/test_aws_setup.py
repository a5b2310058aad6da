"""The AWS backend's set-up on moto's server: the table and the SQS queues made once and
found after, what cannot be used refused clearly, queue names mapped safely, requests
counted, and ``ojs-actors aws-setup`` as a real process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ojs_actors.backends.aws.client import AwsClients, AwsSettings, error_code
from ojs_actors.backends.aws.options import AWS_OPTIONS
from ojs_actors.backends.aws.setup import (
    QUEUE_MISSING_CODES,
    QueueUrls,
    SetupError,
    ensure_queue,
    ensure_table,
    sqs_queue_name,
)
from ojs_actors.cli import main
from ojs_actors.core import BackendUnavailable, InvalidRequest
from ojs_actors.testing.services import free_port

SQS_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
SQS_FIFO_NAME = re.compile(r"[A-Za-z0-9_-]{1,75}\.fifo")


@pytest.fixture
async def aws(aws_options: dict[str, Any]) -> AsyncIterator[AwsClients]:
    settings = AwsSettings(region=aws_options["region"], endpoint_url=aws_options["endpoint_url"])
    async with AwsClients(settings).opened() as clients:
        yield clients


async def key_of(aws: AwsClients, table: str) -> dict[str, Any]:
    described = (await aws.dynamodb("describe_table", TableName=table))["Table"]
    return {
        "key": described["KeySchema"],
        "attributes": described["AttributeDefinitions"],
        "indexes": described.get("GlobalSecondaryIndexes", []),
        "billing": described["BillingModeSummary"]["BillingMode"],
    }


# -- the table -----------------------------------------------------------------------------


async def test_ensure_table_creates_the_table_once_and_then_finds_it(
    aws: AwsClients, aws_options: dict[str, Any]
) -> None:
    table = aws_options["table"]
    first = await ensure_table(aws, table)
    again = await ensure_table(aws, table)

    assert (first.name, first.created, first.status) == (table, True, "ACTIVE")
    assert (again.created, again.status, again.billing_mode) == (False, "ACTIVE", "PAY_PER_REQUEST")
    assert await key_of(aws, table) == {
        "key": [{"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"}],
        "attributes": [{"AttributeName": "pk", "AttributeType": "S"},
                       {"AttributeName": "sk", "AttributeType": "S"}],
        "indexes": [],
        "billing": "PAY_PER_REQUEST",
    }  # fmt: skip
    key = {"pk": {"S": "job#1"}, "sk": {"S": "#"}}
    await aws.dynamodb("put_item", TableName=table, Item={**key, "v": {"N": "1"}})
    found = await aws.dynamodb("get_item", TableName=table, Key=key, ConsistentRead=True)
    assert found["Item"]["v"] == {"N": "1"}


SEED_KEY = ([("PK", "HASH", "S"), ("SK", "RANGE", "S")], "PK (HASH, S) + SK (RANGE, S)")


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        SEED_KEY,  # ojs-backend-sqs's table, under the same default name (ojs-jobs)
        ([("pk", "HASH", "S")], "pk (HASH, S)"),
        ([("pk", "HASH", "S"), ("sk", "RANGE", "N")], "pk (HASH, S) + sk (RANGE, N)"),
        ([("sk", "HASH", "S"), ("pk", "RANGE", "S")], "sk (HASH, S) + pk (RANGE, S)"),
    ],
    ids=["seed", "no-sort-key", "numeric-sk", "swapped"],
)
async def test_a_table_with_another_key_is_refused_clearly(
    aws: AwsClients,
    aws_options: dict[str, Any],
    key: list[tuple[str, str, str]],
    shown: str,
) -> None:
    table = aws_options["table"]
    await aws.dynamodb(
        "create_table",
        TableName=table,
        KeySchema=[{"AttributeName": name, "KeyType": kind} for name, kind, _ in key],
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": t} for name, _, t in key],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(SetupError) as refused:
        await ensure_table(aws, table)

    message = str(refused.value)
    assert f"DynamoDB table {table!r} has the key {shown}" in message
    assert "needs pk (HASH, S) + sk (RANGE, S)" in message
    assert "--dynamodb-table" in message
    assert ("ojs-backend-sqs" in message) == (key == SEED_KEY[0])


# -- SQS queue names -----------------------------------------------------------------------


def test_a_queue_name_is_the_prefix_and_the_ojs_name() -> None:
    assert sqs_queue_name("ojs", "default", fifo=False) == "ojs-default"
    assert sqs_queue_name("ojs", "default", fifo=True) == "ojs-default.fifo"
    assert sqs_queue_name("Team_A-ojs", "x9", fifo=False) == "Team_A-ojs-x9"


def test_dots_become_underscores_so_no_two_queues_share_an_sqs_queue() -> None:
    assert sqs_queue_name("ojs", "emails.high", fifo=False) == "ojs-emails_high"
    assert sqs_queue_name("ojs", "emails-high", fifo=False) == "ojs-emails-high"
    assert sqs_queue_name("ojs", "a.b.c", fifo=True) == "ojs-a_b_c.fifo"


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
@pytest.mark.parametrize("prefix", ["o", "p" * 40], ids=["short-prefix", "longest-prefix"])
def test_a_name_too_long_for_sqs_is_cut_and_marked_with_its_hash(prefix: str, fifo: bool) -> None:
    long = "q." + "a" * 120 + "-1"
    other = "q." + "a" * 120 + "-2"
    fits = "b" * (80 - len(prefix) - 1 - (5 if fifo else 0))
    name = sqs_queue_name(prefix, long, fifo)

    assert len(name) == 80
    assert (SQS_FIFO_NAME if fifo else SQS_NAME).fullmatch(name)
    assert name.startswith(f"{prefix}-q_aaa")
    assert re.search(r"-H[0-9a-f]{16}(\.fifo)?$", name)
    assert name == sqs_queue_name(prefix, long, fifo)  # the same in every process
    assert name != sqs_queue_name(prefix, other, fifo)
    assert sqs_queue_name(prefix, fits, fifo) == f"{prefix}-{fits}" + (".fifo" if fifo else "")
    assert "-H" in sqs_queue_name(prefix, fits + "b", fifo)


def test_names_sqs_cannot_take_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        sqs_queue_name("ojs", "Upper", fifo=False)
    with pytest.raises(InvalidRequest):
        sqs_queue_name("ojs", "under_score", fifo=False)
    for prefix in ("", "ojs.x", "p" * 41):
        with pytest.raises(ValueError):
            sqs_queue_name(prefix, "default", fifo=False)


# -- SQS queues ----------------------------------------------------------------------------


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
async def test_ensure_queue_creates_the_sqs_queue_once(
    aws: AwsClients, aws_options: dict[str, Any], fifo: bool
) -> None:
    prefix = aws_options["queue_prefix"]
    suffix = ".fifo" if fifo else ""
    urls = {queue: await ensure_queue(aws, prefix, queue, fifo) for queue in ("default", "a.b")}
    assert urls["default"].endswith(f"/{prefix}-default{suffix}")
    assert urls["a.b"].endswith(f"/{prefix}-a_b{suffix}")
    assert await ensure_queue(aws, prefix, "a.b", fifo) == urls["a.b"]

    listed = await aws.sqs("list_queues", QueueNamePrefix=f"{prefix}-")
    assert sorted(listed["QueueUrls"]) == sorted(urls.values())
    attributes = await aws.sqs("get_queue_attributes", QueueUrl=urls["a.b"], AttributeNames=["All"])
    assert attributes["Attributes"].get("FifoQueue", "false") == str(fifo).lower()

    sent = await aws.sqs(
        "send_message",
        QueueUrl=urls["a.b"],
        MessageBody='{"id": "j1", "v": 1}',
        **({"MessageGroupId": "a.b"} if fifo else {}),
    )
    assert sent["MessageId"]


async def test_a_fifo_queue_made_with_other_attributes_is_refused_clearly(
    aws: AwsClients, aws_options: dict[str, Any]
) -> None:
    prefix = aws_options["queue_prefix"]
    name = f"{prefix}-default.fifo"
    await aws.sqs("create_queue", QueueName=name, Attributes={"FifoQueue": "true",
                                                               "ContentBasedDeduplication": "false"})  # fmt: skip
    with pytest.raises(SetupError, match=f"SQS queue '{re.escape(name)}' exists with attributes"):
        await ensure_queue(aws, prefix, "default", fifo=True)


# -- requests counted ----------------------------------------------------------------------


async def test_every_request_is_counted_by_operation(
    aws: AwsClients, aws_options: dict[str, Any]
) -> None:
    await ensure_table(aws, aws_options["table"])
    assert aws.requests == Counter({
        "dynamodb.DescribeTable": 1, "dynamodb.CreateTable": 1,
        "dynamodb.DescribeTimeToLive": 1, "dynamodb.UpdateTimeToLive": 1,  # the outbox's TTL
    })  # fmt: skip
    answer = await aws.dynamodb("describe_time_to_live", TableName=aws_options["table"])
    assert answer["TimeToLiveDescription"]["AttributeName"] == "exp"
    await ensure_table(aws, aws_options["table"])  # found, TTL on: nothing to change
    assert aws.requests["dynamodb.UpdateTimeToLive"] == 1
    aws.requests.clear()

    urls = QueueUrls(aws, aws_options["queue_prefix"], fifo=False)
    first = await urls.url("default")
    assert await urls.url("default") == first  # kept: no second request
    await urls.url("other")
    assert aws.requests["sqs.CreateQueue"] == 2
    urls.forget("default")
    assert await urls.url("default") == first
    assert aws.requests["sqs.CreateQueue"] == 3
    assert sum(aws.requests.values()) == 3  # since the table's requests were cleared


async def test_each_attempt_at_an_unreachable_endpoint_is_counted(
    aws_options: dict[str, Any],
) -> None:
    settings = AwsSettings(endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    async with AwsClients(settings).opened() as aws:
        with pytest.raises(BackendUnavailable, match="Could not connect"):
            await ensure_table(aws, aws_options["table"])
    # botocore's retries={"max_attempts": n} is n retries after the first attempt
    assert aws.requests == Counter({"dynamodb.DescribeTable": 1 + settings.max_attempts})


# -- ojs-actors aws-setup ------------------------------------------------------------------


def aws_setup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ojs_actors", "aws-setup", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


async def test_aws_setup_creates_the_table_and_queues_then_finds_them(
    aws: AwsClients, aws_options: dict[str, Any]
) -> None:
    table, prefix = aws_options["table"], aws_options["queue_prefix"]
    made = aws_setup(
        "--aws-endpoint-url", aws_options["endpoint_url"], "--dynamodb-table", table,
        "--sqs-queue-prefix", prefix, "--queues", "default,emails.high",
    )  # fmt: skip
    assert (made.returncode, made.stderr) == (0, "")
    url = aws_options["endpoint_url"]
    assert made.stdout.splitlines() == [
        f"table {table}: created (ACTIVE, PAY_PER_REQUEST, key pk + sk)",
        f"queue default: created {prefix}-default ({url}/123456789012/{prefix}-default)",
        f"queue emails.high: created {prefix}-emails_high "
        f"({url}/123456789012/{prefix}-emails_high)",
    ]

    # the same settings from the environment, as the backend reads them
    found = aws_setup("--queues", "emails.high", env={
        "AWS_ENDPOINT_URL": url, "AWS_REGION": "us-east-1", "DYNAMODB_TABLE": table,
        "SQS_QUEUE_PREFIX": prefix, "SQS_USE_FIFO": "false",
    })  # fmt: skip
    assert (found.returncode, found.stderr) == (0, "")
    assert found.stdout.splitlines() == [
        f"table {table}: found (ACTIVE, PAY_PER_REQUEST, key pk + sk)",
        f"queue emails.high: found {prefix}-emails_high ({url}/123456789012/{prefix}-emails_high)",
    ]
    for name in (f"{prefix}-default", f"{prefix}-emails_high"):
        await aws.sqs("get_queue_url", QueueName=name)
    with pytest.raises(ClientError) as missing:  # no FIFO queue was asked for
        await aws.sqs("get_queue_url", QueueName=f"{prefix}-default.fifo")
    assert error_code(missing.value) in QUEUE_MISSING_CODES


def test_aws_setup_says_in_one_line_when_aws_cannot_be_reached(
    aws_options: dict[str, Any],
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    failed = aws_setup("--aws-endpoint-url", endpoint, "--dynamodb-table", aws_options["table"])

    assert (failed.returncode, failed.stdout) == (1, "")
    assert len(failed.stderr.splitlines()) == 1
    assert failed.stderr.startswith(
        f"ojs-actors aws-setup: cannot reach {endpoint}: AWS describe_table: Could not connect"
    )


async def test_aws_setup_refuses_a_table_with_another_key_in_one_line(
    aws: AwsClients, aws_options: dict[str, Any]
) -> None:
    table = aws_options["table"]
    await aws.dynamodb(
        "create_table", TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
    )  # fmt: skip
    refused = aws_setup(
        "--aws-endpoint-url", aws_options["endpoint_url"], "--dynamodb-table", table
    )

    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.splitlines() == [
        f"ojs-actors aws-setup: DynamoDB table {table!r} has the key PK (HASH, S) "
        "(ojs-backend-sqs's table has PK + SK and GSIs), but the AWS backend needs pk (HASH, "
        "S) + sk (RANGE, S): name another table (--dynamodb-table, DYNAMODB_TABLE)"
    ]


def test_aws_setup_refuses_bad_arguments_with_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["aws-setup", "--queues", "default,Bad_Name"])
    assert exited.value.code == 2
    assert "'Bad_Name': " in capsys.readouterr().err

    monkeypatch.setenv("AWS_ENDPOINT_URL", "localhost:4566")
    assert main(["aws-setup"]) == 2
    assert capsys.readouterr().err == (
        "ojs-actors aws-setup: environment variable AWS_ENDPOINT_URL: expected an http:// or "
        "https:// URL (or nothing), not 'localhost:4566'\n"
    )


def test_the_aws_options_are_the_seeds_settings() -> None:
    assert [(o.name, o.flag, o.env, o.default) for o in AWS_OPTIONS] == [
        ("region", "--aws-region", "AWS_REGION", "us-east-1"),
        ("endpoint_url", "--aws-endpoint-url", "AWS_ENDPOINT_URL", None),
        ("table", "--dynamodb-table", "DYNAMODB_TABLE", "ojs-jobs"),
        ("queue_prefix", "--sqs-queue-prefix", "SQS_QUEUE_PREFIX", "ojs"),
        ("fifo", "--sqs-use-fifo", "SQS_USE_FIFO", False),
        ("timeout", "--aws-timeout", "OJS_AWS_TIMEOUT", 5.0),  # ours
    ]
    endpoint = AWS_OPTIONS[1]
    assert endpoint.from_env({"AWS_ENDPOINT_URL": ""}) is None  # empty: real AWS
    assert endpoint.from_env({"AWS_ENDPOINT_URL": "http://h:1"}) == "http://h:1"
    assert AWS_OPTIONS[4].from_env({"SQS_USE_FIFO": "true"}) is True
