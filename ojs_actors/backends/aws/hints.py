"""SQS hints: :class:`SqsHints` sends one message per write that made jobs of a queue
available, and wakes the fetches of every process that long-polls the queue
(``ReadyNotices``).

A hint is ``{"jobs": [[job id, version], ...]}`` (the jobs of one DynamoDB write, at
most 100 items, so 20-odd jobs at most) on the queue's SQS queue, sent after that
write (one ``SendMessage``; a message per job cost a tenth of a request per job to
send, and as much again to receive and delete).
It is a hint, never the truth: a process that receives hints notifies its waiting
fetches of that queue and deletes them; the fetch claims from the ready index, in
priority-then-FIFO order, whatever the hint named. So a hint lost (a crash between
the write and the send, SQS unreachable) costs latency, not the job: the fetches'
polls (every ``poll_interval``) claim it all the same; a hint for a job that moved on
wakes a fetch that finds nothing for it.

Every process long-polls (``WaitTimeSeconds`` 20, on a connection pool of its own: an
idle queue costs three requests a minute) the queues it fetches from, and only those:
SQS hands each message to one receiver, so a process that only enqueues must not take
the hints meant for those that fetch. With several fetching processes a hint wakes one
of them; the others find the work at their next poll if that one is busy. On FIFO
queues (``SQS_USE_FIFO``) the hints of a queue are one message group in order,
de-duplicated by the id and version of the message's first job (a job version is made
available once).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence

import trio

from ...core import BackendUnavailable
from .client import AwsClients
from .setup import QueueUrls

log = logging.getLogger("ojs_actors.backends.aws")

SEND_BATCH = 10
"""SQS's limit of messages per ``ReceiveMessage``."""
LONG_POLL_S = 20


class SqsHints:
    def __init__(self, aws: AwsClients, urls: QueueUrls) -> None:
        self._aws = aws
        self._urls = urls
        self._known: set[str] = set()
        self._new_queue = trio.Event()

    def know(self, queue: str) -> None:
        """Long-poll ``queue`` too (this process fetches from it)."""
        if queue not in self._known:
            self._known.add(queue)
            self._new_queue.set()

    async def send(self, ready: Iterable[tuple[str, str, int]]) -> None:
        """Hints for ``(queue, job id, version)`` of jobs just made available. Failures
        are logged, not raised: the write they follow is stored, and polls find its jobs."""
        by_queue: dict[str, list[tuple[str, int]]] = {}
        for queue, job_id, version in ready:
            by_queue.setdefault(queue, []).append((job_id, version))
        for queue, jobs in by_queue.items():
            try:
                await self._send_queue(queue, jobs)
            except BackendUnavailable as error:
                log.warning(
                    "SQS hints of queue %s not sent (%s); polls find the jobs", queue, error
                )

    async def _send_queue(self, queue: str, jobs: Sequence[tuple[str, int]]) -> None:
        """One message for the jobs of one write (a write holds at most 100 items, so
        at most 20-odd jobs: well under SQS's 256 KB): one ``SendMessage``, and one
        message to receive and delete, per write rather than per job."""
        url = await self._urls.url(queue)
        body = json.dumps({"jobs": [[job_id, version] for job_id, version in jobs]})
        message: dict[str, str] = {"QueueUrl": url, "MessageBody": body}
        if self._urls.fifo:
            first_id, first_version = jobs[0]
            message["MessageGroupId"] = queue
            message["MessageDeduplicationId"] = f"{first_id}-{first_version}"
        await self._aws.sqs("send_message", **message)

    async def watch_ready(self, notify: Callable[[str], None]) -> None:
        """``ReadyNotices``: long-poll every known queue; ``notify(queue)`` per queue that
        had hints. While SQS is away each queue's poll waits and tries again."""
        async with trio.open_nursery() as nursery:
            watched: set[str] = set()
            while True:
                for queue in sorted(self._known - watched):
                    watched.add(queue)
                    nursery.start_soon(self._watch_queue, queue, notify)
                self._new_queue = trio.Event()
                await self._new_queue.wait()

    async def _watch_queue(self, queue: str, notify: Callable[[str], None]) -> None:
        while True:
            try:
                await self._poll(queue, notify)
            except BackendUnavailable:
                # SQS is away: the waiters poll meanwhile; poll again once the breaker
                # lets a call through, without ending the other queues' polls
                await trio.sleep(self._aws.settings.breaker_cooldown)

    async def _poll(self, queue: str, notify: Callable[[str], None]) -> None:
        url = await self._urls.url(queue)
        answer = await self._aws.sqs_long_poll(
            QueueUrl=url, MaxNumberOfMessages=SEND_BATCH, WaitTimeSeconds=LONG_POLL_S
        )
        messages = answer.get("Messages", [])
        if not messages:
            return
        notify(queue)
        await self._aws.sqs(
            "delete_message_batch",
            QueueUrl=url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
                for n, message in enumerate(messages)
            ],  # fmt: skip
        )


__all__ = ["LONG_POLL_S", "SEND_BATCH", "SqsHints"]
