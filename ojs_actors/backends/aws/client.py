"""AWS, called: :class:`AwsClients` opens DynamoDB and SQS clients natively on trio.

aiobotocore runs on trio without the asyncio bridge when its HTTP session is httpx's
(``AioConfig(http_session_cls=HttpxSession)``, on httpx2, which the ``aws`` extra
installs): every call is a plain trio await, and cancelling the caller cancels the call
(a long poll too).

:meth:`AwsClients.dynamodb` and :meth:`AwsClients.sqs` make one call each, count it
(``requests``: per operation, the figure the cost per job is measured with, from
botocore's ``before-send`` event, so retries count too) and turn what is not an
answer into :class:`~ojs_actors.core.BackendUnavailable` (HTTP 503): throttling and
AWS's own failures (any 5xx), and, through a :class:`~ojs_actors.backends.breaker.
CircuitBreaker`, no answer within ``timeout`` or no connection (after which calls fail
at once until a probe gets an answer). A refused condition stays botocore's
``ClientError`` for the caller to read (``error_code``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import trio
from aiobotocore.config import AioConfig
from aiobotocore.httpxsession import HttpxSession
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as AwsConnectionError

from ...core import BackendUnavailable
from ..breaker import CircuitBreaker, NoAnswer

UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
        "InternalServerError", "ServiceUnavailable", "InternalFailure",
    }
)  # fmt: skip


BATCH_WRITE = 25
"""DynamoDB's limit of requests per ``BatchWriteItem``."""
POLL_CONNECTIONS = 64
"""Connections for long polls (one per queue polled at once)."""


@dataclass(frozen=True, slots=True)
class AwsSettings:
    region: str = "us-east-1"
    """``AWS_REGION``."""
    endpoint_url: str | None = None
    """``AWS_ENDPOINT_URL``: an emulator (moto, LocalStack); ``None``: real AWS."""
    timeout: float = 5.0
    """Seconds a call may take (a long poll adds its wait) before it fails with 503."""
    max_attempts: int = 2
    """botocore's attempts per call (its own retries of throttling and 5xx)."""
    breaker_cooldown: float = 1.0
    """Seconds calls fail at once after one got no answer, before one probes again."""


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def unavailable(error: ClientError) -> bool:
    """Whether AWS answered "not now" (throttling, its own failure: any 5xx), which the
    client may retry, rather than refused the request."""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return error_code(error) in UNAVAILABLE_CODES or int(status) >= 500


class AwsClients:
    """The DynamoDB and SQS clients of one backend, open between :meth:`start` and
    :meth:`close` (credentials from the standard chain: environment, profile, role)."""

    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        self.breaker = CircuitBreaker("AWS", cooldown=settings.breaker_cooldown)
        self.requests: Counter[str] = Counter()
        """Requests sent, by ``service.Operation`` (e.g. ``dynamodb.TransactWriteItems``)."""
        self._stack: contextlib.AsyncExitStack | None = None
        self._dynamodb: Any = None
        self._sqs: Any = None
        self._sqs_polls: Any = None

    async def start(self) -> None:
        settings = self.settings
        config = AioConfig(
            http_session_cls=HttpxSession,
            connect_timeout=settings.timeout,
            read_timeout=settings.timeout + 20,  # a long poll waits up to 20 s
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
        )
        # Long polls hold a connection each for up to 20 s: they get a client (and a
        # pool) of their own, so no other call ever waits behind them.
        polls = config.merge(AioConfig(max_pool_connections=POLL_CONNECTIONS))
        session = get_session()
        options = {"region_name": settings.region, "endpoint_url": settings.endpoint_url}
        async with contextlib.AsyncExitStack() as stack:
            self._dynamodb = await stack.enter_async_context(
                session.create_client("dynamodb", config=config, **options)
            )
            self._sqs = await stack.enter_async_context(
                session.create_client("sqs", config=config, **options)
            )
            self._sqs_polls = await stack.enter_async_context(
                session.create_client("sqs", config=polls, **options)
            )
            for client in (self._dynamodb, self._sqs, self._sqs_polls):
                client.meta.events.register("before-send.*.*", self._count)
            self._stack = stack.pop_all()

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def dynamodb(self, operation: str, **parameters: Any) -> dict[str, Any]:
        """One DynamoDB call, e.g. ``dynamodb("transact_write_items", TransactItems=[...])``."""
        return await self._call(self._dynamodb, operation, parameters)

    async def sqs(self, operation: str, **parameters: Any) -> dict[str, Any]:
        """One SQS call, e.g. ``sqs("send_message_batch", QueueUrl=..., Entries=[...])``."""
        return await self._call(self._sqs, operation, parameters)

    async def dynamodb_items(
        self, operation: str, *, limit: int | None = None, **request: Any
    ) -> list[dict[str, Any]]:
        """Every item of a ``query`` or ``scan`` (``operation``), page after page, or the
        first ``limit`` or more if ``request`` has ``Limit`` (then it stops after the
        page that reaches it)."""
        items: list[dict[str, Any]] = []
        while True:
            answer = await self.dynamodb(operation, **request)
            items += answer.get("Items", [])
            last = answer.get("LastEvaluatedKey")
            if last is None or (limit is not None and len(items) >= limit):
                return items
            request["ExclusiveStartKey"] = last

    async def delete_items(self, table: str, keys: Sequence[dict[str, Any]]) -> None:
        """Delete the items of ``keys`` (``BatchWriteItem``, :data:`BATCH_WRITE` at a time,
        again with what DynamoDB left unprocessed)."""
        for start in range(0, len(keys), BATCH_WRITE):
            chunk = keys[start : start + BATCH_WRITE]
            request = {table: [{"DeleteRequest": {"Key": key}} for key in chunk]}
            while request:
                answer = await self.dynamodb("batch_write_item", RequestItems=request)
                request = answer.get("UnprocessedItems") or {}

    async def sqs_long_poll(self, **parameters: Any) -> dict[str, Any]:
        """One ``ReceiveMessage`` that may wait (``WaitTimeSeconds``), on its own pool."""
        return await self._call(self._sqs_polls, "receive_message", parameters)

    async def _call(
        self, client: Any, operation: str, parameters: dict[str, Any]
    ) -> dict[str, Any]:
        if client is None:
            raise BackendUnavailable("The AWS clients are not started.")
        # A call's own deadline (a long poll's is its wait plus that): an endpoint that
        # stops answering fails requests fast instead of holding them; the breaker then
        # fails the calls behind it at once, and the ones in flight with it.
        waits = float(parameters.get("WaitTimeSeconds", 0))
        deadline = self.settings.timeout + waits
        with self.breaker.call(operation, may_probe=not waits):
            try:
                with trio.move_on_after(deadline) as waited:
                    answer: dict[str, Any] = await getattr(client, operation)(**parameters)
            except ClientError as error:
                if unavailable(error):
                    raise BackendUnavailable(f"AWS {operation}: {error_code(error)}") from error
                raise
            except (AwsConnectionError, HTTPClientError, OSError) as error:
                raise NoAnswer(f"AWS {operation}: {error}") from error
            if waited.cancelled_caught:
                raise NoAnswer(f"AWS {operation}: no answer within {deadline:g}s")
            return answer

    def _count(self, event_name: str = "", **_: Any) -> None:
        # event_name: "before-send.<service>.<Operation>", once per attempt (AWS bills each)
        self.requests[event_name.removeprefix("before-send.")] += 1

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[AwsClients]:
        await self.start()
        try:
            yield self
        finally:
            await self.close()


__all__ = [
    "BATCH_WRITE", "UNAVAILABLE_CODES", "AwsClients", "AwsSettings", "error_code", "unavailable",
]  # fmt: skip
