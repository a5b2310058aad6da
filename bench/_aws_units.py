"""What AWS bills for the sqs backend's calls: requests, DynamoDB request units, prices.

:class:`UsageMeter` wraps the calls of one :class:`~ojs_actors.backends.aws.client.AwsClients`
(``dynamodb``, ``sqs``, ``sqs_long_poll``: the backend makes every AWS call through
them) and records, per ``service.Operation``:

- ``calls``: the backend's calls. ``AwsClients.requests`` (botocore's ``before-send``,
  one per HTTP attempt) is read beside them as ``requests``. The two differ only by
  botocore's retries.
- ``wru`` / ``rru``: the DynamoDB request units AWS would bill for the call, estimated
  from the items sent and received with DynamoDB's published rules (below). DynamoDB
  on-demand bills these units, not requests.
- ``sqs_billed``: the SQS requests AWS would bill. Each 64 KB chunk of a request's
  payload is one request.
- ``transactions`` / ``transaction_items``: the ``TransactWriteItems`` calls and the
  items in them (their ``TransactItems``).

DynamoDB's rules, as its pricing and developer guide state them:

- **Item size** is the sum, over the item's attributes, of the UTF-8 length of the name
  plus the value's size. A string is its UTF-8 length. A number is about one byte per
  two significant digits, plus one. Binary is its length. A boolean or null is 1. A
  list or map is 3 bytes, plus 1 byte and the size of each element (a map's element is
  its name plus its value). A set is the sum of its elements.
- **Writes**: a standard write of an item costs 1 WRU per KB, rounded up, at least 1. A
  transactional write costs 2. A put or update is charged on the larger of the old
  and the new item. A delete is charged on the item deleted. Here an item's stored
  size is known when the meter saw it written or read; otherwise the size sent stands
  in for it.
- **Reads**: a strongly consistent read costs 1 RRU per 4 KB, rounded up, at least
  1; an eventually consistent one costs half. ``GetItem`` and each key of
  ``BatchGetItem`` are rounded item by item, and a missing item costs the minimum.
  A ``Query`` or ``Scan`` is rounded once over the sum of the items it returns.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

KB = 1024
READ_UNIT_BYTES = 4 * KB
SQS_CHUNK_BYTES = 64 * KB
HOURS_PER_MONTH = 730
"""AWS's month in its price examples."""


# -- prices -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prices:
    """US East (N. Virginia) list prices, USD."""

    wru_per_million: float = 0.625
    """DynamoDB on-demand, Standard table class: per million write request units (the
    price since the on-demand cut of 1 November 2024; $1.25 before)."""
    rru_per_million: float = 0.125
    """DynamoDB on-demand, Standard table class: per million read request units ($0.25
    before 1 November 2024)."""
    sqs_per_million: float = 0.40
    """SQS standard queues, per million requests (64 KB chunks), first 100 billion a
    month. FIFO queues cost $0.50. The first million requests a month are free. That is
    left out here."""
    region: str = "us-east-1"
    used_on: str = "2026-12-02"
    """When these prices were used."""
    sources: str = (
        "DynamoDB: $0.625 per million WRU and $0.125 per million RRU on demand (AWS's "
        "50% on-demand cut effective 2024-11-01), as quoted by stored copies of "
        "airbyte.com (2025-07-21) and jusdb.com (2025-08-19) pricing pages; AWS's pricing "
        "whitepaper copy states 2 WRU per transactional write per KB, 1 RRU per strongly "
        "consistent 4 KB read. SQS: $0.40 per million standard requests, each 64 KB chunk "
        "a request, from stored copies of cloudburn.io (2026-03-14) and factualminds.com "
        "(2026-06-13). AWS's own price pages were not in the store: to be checked against "
        "aws.amazon.com/dynamodb/pricing/on-demand and aws.amazon.com/sqs/pricing"
    )

    def dollars(self, wru: float, rru: float, sqs: float) -> float:
        """What ``wru`` write units, ``rru`` read units and ``sqs`` billed SQS requests cost."""
        return (
            wru * self.wru_per_million + rru * self.rru_per_million + sqs * self.sqs_per_million
        ) / 1e6


PRICES = Prices()


# -- sizes and units --------------------------------------------------------------------------


def number_size(text: str) -> int:
    """A DynamoDB number's size: 1 byte per two significant digits, plus 1."""
    digits = text.strip().lstrip("+-").lower().split("e", 1)[0].replace(".", "")
    significant = digits.strip("0") or "0"
    return (len(significant) + 1) // 2 + 1


def attribute_size(value: Mapping[str, Any]) -> int:
    """The size of one typed value (``{"S": ...}``, ``{"N": ...}``, ``{"L": [...]}``, ...)."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return number_size(str(data))
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(item).encode()) for item in data)
    if kind == "NS":
        return sum(number_size(str(item)) for item in data)
    if kind == "BS":
        return sum(len(item) for item in data)
    if kind == "L":
        return 3 + sum(1 + attribute_size(item) for item in data)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + attribute_size(item) for name, item in data.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """An item's size: each attribute's name (UTF-8) plus its value."""
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(size: int, *, transactional: bool = False) -> int:
    """WRUs of one item written: 1 per KB (rounded up, at least 1), twice in a transaction."""
    units = max(1, math.ceil(size / KB))
    return 2 * units if transactional else units


def read_units(size: int, *, consistent: bool = True) -> float:
    """RRUs of ``size`` bytes read at once: 1 per 4 KB (rounded up, at least 1) strongly
    consistent, half that eventually consistent."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def sqs_billed(payload_bytes: int) -> int:
    """SQS requests billed for one request carrying ``payload_bytes``: one per 64 KB."""
    return max(1, math.ceil(payload_bytes / SQS_CHUNK_BYTES))


def operation_name(snake: str) -> str:
    """botocore's operation name of a client method: ``transact_write_items`` ->
    ``TransactWriteItems``."""
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_"))


Key = tuple[str, str]


def key_of(item: Mapping[str, Mapping[str, Any]]) -> Key:
    """The ``(pk, sk)`` of an item or key of the backend's table (strings)."""
    return str(item["pk"]["S"]), str(item.get("sk", {}).get("S", ""))


class ItemSizes:
    """The stored size of every item the meter saw written or read (what a later
    delete, or an update's old item, is charged on)."""

    def __init__(self) -> None:
        self._sizes: dict[Key, int] = {}

    def __len__(self) -> int:
        return len(self._sizes)

    def seen(self, item: Mapping[str, Mapping[str, Any]]) -> int:
        size = item_size(item)
        self._sizes[key_of(item)] = size
        return size

    def stored(self, key: Mapping[str, Mapping[str, Any]]) -> int | None:
        return self._sizes.get(key_of(key))

    def forget(self, key: Mapping[str, Mapping[str, Any]]) -> int | None:
        return self._sizes.pop(key_of(key), None)

    def assume(self, key: Mapping[str, Mapping[str, Any]], size: int) -> None:
        """An item first seen updated: its size as the update leaves it (an estimate)."""
        self._sizes[key_of(key)] = size


def _values_size(values: Mapping[str, Mapping[str, Any]] | None) -> int:
    return sum(attribute_size(value) for value in (values or {}).values())


def _write(sizes: ItemSizes, kind: str, op: Mapping[str, Any], *, transactional: bool) -> int:
    """WRUs of one Put, Delete, Update or ConditionCheck, keeping ``sizes`` current.

    A ConditionCheck is charged as a write of the item it checks. DynamoDB bills it to
    the transaction's write units too."""
    if kind == "Put":
        item = op["Item"]
        replaced = sizes.stored(item) or 0
        return write_units(max(replaced, sizes.seen(item)), transactional=transactional)
    key = op["Key"]
    if kind == "Delete":
        size = sizes.forget(key)
        return write_units(
            size if size is not None else item_size(key), transactional=transactional
        )
    before = sizes.stored(key)
    if kind == "Update":
        # The new item: the old one plus what the update sets (an estimate: ADD and SET
        # on existing attributes change it less).
        after = (before or item_size(key)) + _values_size(op.get("ExpressionAttributeValues"))
        if before is None:
            sizes.assume(key, after)
        return write_units(max(before or 0, after), transactional=transactional)
    return write_units(
        before if before is not None else item_size(key), transactional=transactional
    )


@dataclass
class Usage:
    """What a window of calls cost, by ``service.Operation``."""

    requests: Counter[str] = field(default_factory=Counter)
    """HTTP attempts (``AwsClients.requests``, botocore's ``before-send``)."""
    calls: Counter[str] = field(default_factory=Counter)
    wru: dict[str, float] = field(default_factory=dict)
    rru: dict[str, float] = field(default_factory=dict)
    sqs_billed: Counter[str] = field(default_factory=Counter)
    transactions: int = 0
    transaction_items: int = 0
    failed_calls: Counter[str] = field(default_factory=Counter)
    """Calls that raised (a refused condition, an outage); their units are counted."""

    def copy(self) -> Usage:
        return Usage(
            Counter(self.requests), Counter(self.calls), dict(self.wru), dict(self.rru),
            Counter(self.sqs_billed), self.transactions, self.transaction_items,
            Counter(self.failed_calls),
        )  # fmt: skip

    def minus(self, before: Usage) -> Usage:
        """The usage since ``before`` (an earlier copy)."""

        def since(now: Counter[str], then: Counter[str]) -> Counter[str]:
            return Counter(
                {op: n - then.get(op, 0) for op, n in now.items() if n != then.get(op, 0)}
            )

        def units_since(now: dict[str, float], then: dict[str, float]) -> dict[str, float]:
            return {op: n - then.get(op, 0) for op, n in now.items() if n != then.get(op, 0)}

        return Usage(
            since(self.requests, before.requests), since(self.calls, before.calls),
            units_since(self.wru, before.wru), units_since(self.rru, before.rru),
            since(self.sqs_billed, before.sqs_billed),
            self.transactions - before.transactions,
            self.transaction_items - before.transaction_items,
            since(self.failed_calls, before.failed_calls),
        )  # fmt: skip

    # -- totals -------------------------------------------------------------------------

    def total_requests(self, service: str | None = None) -> int:
        return sum(n for op, n in self.requests.items() if _of(op, service))

    def total_calls(self, service: str | None = None) -> int:
        return sum(n for op, n in self.calls.items() if _of(op, service))

    @property
    def total_wru(self) -> float:
        return float(sum(self.wru.values()))

    @property
    def total_rru(self) -> float:
        return float(sum(self.rru.values()))

    @property
    def total_sqs_billed(self) -> int:
        return sum(self.sqs_billed.values())

    def dollars(self, prices: Prices = PRICES) -> float:
        return prices.dollars(self.total_wru, self.total_rru, self.total_sqs_billed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests), "calls": dict(self.calls), "wru": dict(self.wru),
            "rru": dict(self.rru), "sqs_billed": dict(self.sqs_billed),
            "transactions": self.transactions, "transaction_items": self.transaction_items,
            "failed_calls": dict(self.failed_calls),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        return cls(
            Counter(data.get("requests", {})), Counter(data.get("calls", {})),
            dict(data.get("wru", {})), dict(data.get("rru", {})),
            Counter(data.get("sqs_billed", {})), int(data.get("transactions", 0)),
            int(data.get("transaction_items", 0)), Counter(data.get("failed_calls", {})),
        )  # fmt: skip


def _of(operation: str, service: str | None) -> bool:
    return service is None or operation.startswith(service + ".")


# -- the meter --------------------------------------------------------------------------------

Call = Callable[..., Awaitable[dict[str, Any]]]


class UsageMeter:
    """Wraps an ``AwsClients``' three call methods (on that object alone) and accounts
    every call: :attr:`usage` grows, :meth:`snapshot` copies it."""

    def __init__(self, aws: Any) -> None:
        self.aws = aws
        self.sizes = ItemSizes()
        self._usage = Usage()
        dynamodb: Call = aws.dynamodb
        sqs: Call = aws.sqs
        long_poll: Call = aws.sqs_long_poll

        async def metered_dynamodb(operation: str, **parameters: Any) -> dict[str, Any]:
            return await self._metered("dynamodb", operation, parameters, dynamodb, operation)

        async def metered_sqs(operation: str, **parameters: Any) -> dict[str, Any]:
            return await self._metered("sqs", operation, parameters, sqs, operation)

        async def metered_long_poll(**parameters: Any) -> dict[str, Any]:
            return await self._metered("sqs", "receive_message", parameters, long_poll, None)

        aws.dynamodb, aws.sqs, aws.sqs_long_poll = metered_dynamodb, metered_sqs, metered_long_poll

    def snapshot(self) -> Usage:
        usage = self._usage.copy()
        usage.requests = Counter(self.aws.requests)
        return usage

    async def _metered(
        self, service: str, operation: str, parameters: dict[str, Any], call: Call,
        positional: str | None,
    ) -> dict[str, Any]:  # fmt: skip
        name = f"{service}.{operation_name(operation)}"
        usage = self._usage
        usage.calls[name] += 1
        answer: dict[str, Any] = {}
        try:
            answer = await (call(positional, **parameters) if positional else call(**parameters))
            return answer
        except BaseException:
            usage.failed_calls[name] += 1
            raise
        finally:
            if service == "dynamodb":
                self._dynamodb_units(name, parameters, answer)
            else:
                usage.sqs_billed[name] += _sqs_units(name, parameters, answer)

    def _dynamodb_units(
        self, name: str, parameters: dict[str, Any], answer: dict[str, Any]
    ) -> None:
        usage, sizes = self._usage, self.sizes
        operation = name.split(".", 1)[1]
        if operation == "TransactWriteItems":
            items = parameters.get("TransactItems", [])
            usage.transactions += 1
            usage.transaction_items += len(items)
            for entry in items:
                ((kind, op),) = entry.items()
                _add(usage.wru, name, _write(sizes, kind, op, transactional=True))
        elif operation in ("PutItem", "DeleteItem", "UpdateItem"):
            kind = operation.removesuffix("Item")
            _add(usage.wru, name, _write(sizes, kind, parameters, transactional=False))
        elif operation == "BatchWriteItem":
            # Requests left unprocessed are sent again (and counted then), not now.
            unprocessed = [r for rs in (answer.get("UnprocessedItems") or {}).values() for r in rs]
            for requests in parameters.get("RequestItems", {}).values():
                for request in requests:
                    if request in unprocessed:
                        continue
                    kind = "Put" if "PutRequest" in request else "Delete"
                    op = request[f"{kind}Request"]
                    _add(usage.wru, name, _write(sizes, kind, op, transactional=False))
        elif operation == "GetItem":
            item = answer.get("Item")
            size = sizes.seen(item) if item else 0
            _add(
                usage.rru, name, read_units(size, consistent=bool(parameters.get("ConsistentRead")))
            )
        elif operation == "BatchGetItem":
            found = {
                key_of(item): sizes.seen(item)
                for items in (answer.get("Responses") or {}).values()
                for item in items
            }
            unread = {
                key_of(key)
                for request in (answer.get("UnprocessedKeys") or {}).values()
                for key in request.get("Keys", [])
            }
            for request in parameters.get("RequestItems", {}).values():
                consistent = bool(request.get("ConsistentRead"))
                for key in request.get("Keys", []):
                    if key_of(key) not in unread:  # read again later, counted then
                        size = found.get(key_of(key), 0)
                        _add(usage.rru, name, read_units(size, consistent=consistent))
        elif operation in ("Query", "Scan"):
            items = answer.get("Items", [])
            total = sum(sizes.stored(item) or item_size(item) for item in items)
            _add(
                usage.rru,
                name,
                read_units(total, consistent=bool(parameters.get("ConsistentRead"))),
            )
        # DescribeTable, CreateTable, ...: control plane, not billed per request


def _add(units: dict[str, float], name: str, value: float) -> None:
    units[name] = units.get(name, 0) + value


def _sqs_units(name: str, parameters: dict[str, Any], answer: dict[str, Any]) -> int:
    operation = name.split(".", 1)[1]
    if operation in ("SendMessage", "SendMessageBatch"):
        entries = parameters.get("Entries") or [parameters]
        return sqs_billed(sum(_message_bytes(entry) for entry in entries))
    if operation == "ReceiveMessage":
        return sqs_billed(sum(_message_bytes(m) for m in answer.get("Messages", [])))
    return 1


def _message_bytes(message: Mapping[str, Any]) -> int:
    body = len(str(message.get("MessageBody", message.get("Body", ""))).encode())
    attributes = message.get("MessageAttributes") or {}
    return body + len(json.dumps(attributes).encode()) if attributes else body


# -- per job ----------------------------------------------------------------------------------


def per_unit(usage: Usage, count: float) -> dict[str, Any]:
    """``usage`` divided by ``count`` (jobs, or minutes): the figures the report shows."""
    if count <= 0:
        raise ValueError("nothing to divide by")
    by_operation = {op: n / count for op, n in sorted(usage.calls.items())}
    return {
        "calls": usage.total_calls() / count,
        "requests": usage.total_requests() / count,
        "dynamodb_calls": usage.total_calls("dynamodb") / count,
        "sqs_calls": usage.total_calls("sqs") / count,
        "calls_by_operation": by_operation,
        "wru": usage.total_wru / count,
        "rru": usage.total_rru / count,
        "sqs_billed": usage.total_sqs_billed / count,
        "wru_by_operation": {op: n / count for op, n in sorted(usage.wru.items())},
        "rru_by_operation": {op: n / count for op, n in sorted(usage.rru.items())},
        "dollars": usage.dollars() / count,
    }


def mean_transaction_items(usage: Usage) -> float:
    return usage.transaction_items / usage.transactions if usage.transactions else math.nan


def operations(usages: Iterable[Usage]) -> list[str]:
    """Every operation called in any of ``usages``, DynamoDB first, by name."""
    return sorted({op for usage in usages for op in usage.calls})


__all__ = [
    "PRICES", "HOURS_PER_MONTH", "ItemSizes", "Prices", "Usage", "UsageMeter", "attribute_size",
    "item_size", "mean_transaction_items", "number_size", "operation_name", "operations",
    "per_unit", "read_units", "sqs_billed", "write_units",
]  # fmt: skip
