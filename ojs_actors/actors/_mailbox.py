"""Bounded mailboxes and one-shot replies.

A mailbox belongs to a supervised *child*, not to one actor instance: when an
actor crashes and is restarted, the new instance reads the same mailbox, so
messages queued behind the crash are still handled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

from ._errors import ActorStopped, MailboxFull


class Reply:
    """The answer slot of one ``ask``: set exactly once, awaited by one caller."""

    __slots__ = ("_event", "_value", "_error", "abandoned")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self.abandoned = False
        """The caller stopped waiting (timeout or cancellation); don't hand it resources."""

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def set(self, value: Any) -> None:
        if not self._event.is_set():
            self._value = value
            self._event.set()

    def fail(self, error: BaseException) -> None:
        if not self._event.is_set():
            self._error = error
            self._event.set()

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value

    async def wait(self) -> Any:
        """The answer once set; a caller cancelled meanwhile marks the reply
        :attr:`abandoned` (the actor then hands it nothing that needs a taker)."""
        try:
            await self._event.wait()
        except trio.Cancelled:
            self.abandoned = True
            raise
        return self.result()


@dataclass(slots=True)
class Envelope:
    message: Any
    reply: Reply | None = None


class Mailbox:
    def __init__(self, owner: str, capacity: int) -> None:
        self.owner = owner
        self.capacity = capacity
        self._send, self._receive = trio.open_memory_channel[Envelope](capacity)
        self._closed = False

    def __len__(self) -> int:
        return self._send.statistics().current_buffer_used

    async def put(self, envelope: Envelope) -> None:
        """Enqueue, waiting while the mailbox is full (backpressure)."""
        if self._closed:
            raise ActorStopped(f"actor {self.owner!r} is stopped")
        try:
            await self._send.send(envelope)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ActorStopped(f"actor {self.owner!r} is stopped") from None

    def put_nowait(self, envelope: Envelope) -> None:
        if self._closed:
            raise ActorStopped(f"actor {self.owner!r} is stopped")
        try:
            self._send.send_nowait(envelope)
        except trio.WouldBlock:
            raise MailboxFull(f"mailbox of {self.owner!r} is full ({self.capacity})") from None

    async def get(self) -> Envelope:
        return await self._receive.receive()

    def get_nowait(self) -> Envelope | None:
        try:
            return self._receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return None

    def close(self) -> None:
        """No more messages; every queued ``ask`` gets :class:`ActorStopped`."""
        if self._closed:
            return
        self._closed = True
        self._send.close()
        while (envelope := self.get_nowait()) is not None:
            if envelope.reply is not None:
                envelope.reply.fail(
                    ActorStopped(f"actor {self.owner!r} stopped before handling it")
                )
