"""What the AWS backend needs in AWS, made if missing: the DynamoDB table and the SQS
queues. Each step is safe to repeat, and by several processes at once.

SQS queue names
===============

An OJS queue's SQS queue is ``{SQS_QUEUE_PREFIX}-{queue}`` (``.fifo`` appended with
``SQS_USE_FIFO``), as in ojs-backend-sqs. SQS allows only ``A-Z a-z 0-9 _ -`` and 80
characters (``.fifo`` included); an OJS queue name is ``a-z 0-9 - .``, up to 128. So:

- each ``.`` becomes ``_``. OJS names never hold ``_``, so no two queues share an SQS
  name (ojs-backend-sqs turns ``.`` into ``-``: its ``emails.high`` and
  ``emails-high`` are one SQS queue);
- a name that would not fit is cut and ends in ``-H`` and 16 hex digits of the SHA-256
  of the OJS name. The upper-case ``H`` never occurs in a name that fits, so a cut
  name never equals another queue's whole one.

``emails.high`` with prefix ``ojs`` is ``ojs-emails_high`` (``ojs-emails_high.fifo``).
Two deployments sharing an account and region should use prefixes of which neither
is the other followed by ``-`` (``ojs`` and ``ojs-staging`` could meet).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio
from botocore.exceptions import ClientError

from ...core import parse_queue_name
from .client import AwsClients, error_code
from .options import queue_prefix

log = logging.getLogger("ojs_actors.backends.aws")

KEY = {"pk": ("HASH", "S"), "sk": ("RANGE", "S")}
"""The table's key: attribute -> (key type, attribute type)."""
KEY_SCHEMA = [{"AttributeName": name, "KeyType": kind} for name, (kind, _) in KEY.items()]
ATTRIBUTE_DEFINITIONS = [
    {"AttributeName": name, "AttributeType": type_} for name, (_, type_) in KEY.items()
]

USABLE_TABLE_STATUSES = frozenset({"ACTIVE", "UPDATING"})  # UPDATING tables serve reads and writes

SQS_NAME_MAX = 80
FIFO_SUFFIX = ".fifo"
CUT_MARK = "-H"
CUT_DIGEST_HEX = 16

FIFO_ATTRIBUTES: Mapping[str, str] = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
"""A standard queue is made with SQS's defaults (none given, so a queue made earlier with
other settings is taken as it is); a FIFO one with these, as ojs-backend-sqs does."""

QUEUE_EXISTS_CODES = frozenset({"QueueAlreadyExists", "QueueNameExists"})
QUEUE_MISSING_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


class SetupError(Exception):
    """AWS holds something the backend cannot use: a table with another key, a table
    being deleted, a queue with other attributes."""


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    created: bool
    """Made by this call (``False``: it was there)."""
    status: str
    billing_mode: str


async def ensure_table(
    aws: AwsClients, table: str, *, wait: float = 120.0, poll: float = 1.0
) -> Table:
    """The table, made (on-demand billing, no secondary index) if there is none; a table
    of that name with another key is a :class:`SetupError`. Returns once the table is
    usable, waiting up to ``wait`` seconds for a new one."""
    description = await describe_table(aws, table)
    created = False
    if description is None:
        try:
            answer = await aws.dynamodb(
                "create_table",
                TableName=table,
                KeySchema=KEY_SCHEMA,
                AttributeDefinitions=ATTRIBUTE_DEFINITIONS,
                BillingMode="PAY_PER_REQUEST",
            )
            description, created = answer["TableDescription"], True
        except ClientError as error:
            if error_code(error) != "ResourceInUseException":
                raise
            description = await describe_table(aws, table)  # another process made it just now
            if description is None:
                raise SetupError(
                    f"DynamoDB table {table!r} is being created or deleted by someone else; "
                    "run again in a minute"
                ) from error
    check_key(table, description)
    description = await _until_usable(aws, table, description, wait, poll)
    await ensure_ttl(aws, table)
    billing = description.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    return Table(table, created, str(description["TableStatus"]), str(billing))


TTL_ATTRIBUTE = "exp"
"""The attribute DynamoDB's TTL deletes items by: the outbox's entries carry it."""


async def ensure_ttl(aws: AwsClients, table: str) -> bool:
    """DynamoDB's TTL on :data:`TTL_ATTRIBUTE`, turned on if it is off: it deletes the
    outbox entries past retention for free (``backends/aws/events.py``). Without it
    (no ``dynamodb:UpdateTimeToLive`` permission: logged, not fatal) nothing breaks,
    but those items stay and are billed as storage. Returns whether it is on."""
    try:
        answer = await aws.dynamodb("describe_time_to_live", TableName=table)
        status = answer.get("TimeToLiveDescription", {}).get("TimeToLiveStatus", "DISABLED")
        if status in ("ENABLED", "ENABLING"):
            return True
        await aws.dynamodb(
            "update_time_to_live",
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
    except ClientError as error:
        log.warning(
            "DynamoDB TTL on %s.%s not turned on (%s): old outbox entries stay, billed as"
            " storage; turn it on once (aws-setup, or the console)",
            table, TTL_ATTRIBUTE, error_code(error),
        )  # fmt: skip
        return False
    return True


async def describe_table(aws: AwsClients, table: str) -> dict[str, Any] | None:
    """The table's description, ``None`` if there is no such table."""
    try:
        answer = await aws.dynamodb("describe_table", TableName=table)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return None
        raise
    description: dict[str, Any] = answer["Table"]
    return description


def check_key(table: str, description: Mapping[str, Any]) -> None:
    types = {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]}
    found = {
        key["AttributeName"]: (key["KeyType"], types.get(key["AttributeName"], "?"))
        for key in description["KeySchema"]
    }
    if found == KEY:
        return
    hint = " (ojs-backend-sqs's table has PK + SK and GSIs)" if "PK" in found else ""
    raise SetupError(
        f"DynamoDB table {table!r} has the key {_render_key(found)}{hint}, but the AWS "
        f"backend needs {_render_key(KEY)}: name another table (--dynamodb-table, "
        "DYNAMODB_TABLE)"
    )


def _render_key(key: Mapping[str, tuple[str, str]]) -> str:
    ordered = sorted(key.items(), key=lambda item: item[1][0] != "HASH")
    return " + ".join(f"{name} ({kind}, {type_})" for name, (kind, type_) in ordered)


async def _until_usable(
    aws: AwsClients, table: str, description: dict[str, Any], wait: float, poll: float
) -> dict[str, Any]:
    deadline = trio.current_time() + wait
    while description["TableStatus"] == "CREATING":
        if trio.current_time() >= deadline:
            raise SetupError(f"DynamoDB table {table!r} is still CREATING after {wait:g} s")
        await trio.sleep(poll)
        found = await describe_table(aws, table)
        if found is None:
            raise SetupError(f"DynamoDB table {table!r} went away while it was being created")
        description = found
    status = description["TableStatus"]
    if status not in USABLE_TABLE_STATUSES:
        raise SetupError(f"DynamoDB table {table!r} is {status}, so it cannot be used")
    return description


def sqs_queue_name(prefix: str, queue: str, fifo: bool) -> str:
    """The SQS queue of OJS queue ``queue`` (the mapping is in this module's doc)."""
    queue_prefix(prefix)
    parse_queue_name(queue)
    suffix = FIFO_SUFFIX if fifo else ""
    body = queue.replace(".", "_")
    room = SQS_NAME_MAX - len(prefix) - 1 - len(suffix)
    if len(body) > room:
        digest = hashlib.sha256(queue.encode()).hexdigest()[:CUT_DIGEST_HEX]
        body = body[: room - len(CUT_MARK) - CUT_DIGEST_HEX] + CUT_MARK + digest
    return f"{prefix}-{body}{suffix}"


async def ensure_queue(aws: AwsClients, prefix: str, queue: str, fifo: bool) -> str:
    """The URL of ``queue``'s SQS queue, made if missing (``CreateQueue`` returns an
    existing queue whose attributes match the ones asked for)."""
    name = sqs_queue_name(prefix, queue, fifo)
    attributes = dict(FIFO_ATTRIBUTES) if fifo else {}
    try:
        answer = await aws.sqs("create_queue", QueueName=name, Attributes=attributes)
    except ClientError as error:
        if error_code(error) not in QUEUE_EXISTS_CODES:
            raise
        raise SetupError(
            f"SQS queue {name!r} exists with attributes other than {attributes}: delete it, "
            "or use another --sqs-queue-prefix (SQS_QUEUE_PREFIX)"
        ) from error
    return str(answer["QueueUrl"])


class QueueUrls:
    """SQS queue URLs by OJS queue, each queue made on first use and its URL kept for the
    life of the process."""

    def __init__(self, aws: AwsClients, prefix: str, fifo: bool) -> None:
        self._aws = aws
        self.prefix = queue_prefix(prefix)
        self.fifo = fifo
        self._urls: dict[str, str] = {}

    def name(self, queue: str) -> str:
        return sqs_queue_name(self.prefix, queue, self.fifo)

    async def url(self, queue: str) -> str:
        # Two tasks asking at once both call CreateQueue, which is harmless: same answer.
        url = self._urls.get(queue)
        if url is None:
            url = self._urls[queue] = await ensure_queue(self._aws, self.prefix, queue, self.fifo)
        return url

    def forget(self, queue: str) -> None:
        """After an SQS call found the queue gone (:data:`QUEUE_MISSING_CODES`): the next
        :meth:`url` makes it again."""
        self._urls.pop(queue, None)


__all__ = [
    "QUEUE_MISSING_CODES",
    "QueueUrls",
    "SetupError",
    "Table",
    "check_key",
    "describe_table",
    "ensure_queue",
    "ensure_table",
    "ensure_ttl",
    "sqs_queue_name",
]
