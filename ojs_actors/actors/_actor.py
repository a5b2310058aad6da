"""Actors: private state, a bounded mailbox, ``tell``/``ask``, and a pykka-sized API.

Subclasses implement :meth:`Actor.receive` (one message -> its answer) or, to
persist several queued messages in one backend call, :meth:`Actor.receive_batch`.
Hooks: :meth:`on_start` (restore from the snapshot store), :meth:`on_stop`,
:meth:`on_failure`. An actor's background timers run in :attr:`Actor.nursery`,
which lives exactly as long as the actor instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import trio

from ._errors import ActorCrashed, MailboxFull, single_error
from ._mailbox import Envelope, Mailbox, Reply


class SnapshotStore(Protocol):
    """Where actors keep the state they resume from (every backend implements it)."""

    async def load_snapshot(self, key: str) -> dict[str, Any] | None: ...

    async def save_snapshot(self, key: str, state: dict[str, Any]) -> None: ...


class Actor:
    max_batch: int = 512
    """How many queued messages one :meth:`receive_batch` call may take."""

    snapshot_key: str | None = None
    snapshot_store: SnapshotStore | None = None

    nursery: trio.Nursery
    """Owned by this instance: tasks started here end when the actor stops or crashes."""

    async def on_start(self) -> None:
        """Runs before the first message; by default restores the persisted snapshot."""
        if self.snapshot_store is not None and self.snapshot_key is not None:
            state = await self.snapshot_store.load_snapshot(self.snapshot_key)
            if state is not None:
                self.restore(state)

    async def on_stop(self) -> None:
        """Runs after the last message of an orderly stop."""

    async def on_failure(self, error: BaseException) -> None:
        """Runs when the actor crashed, before the supervisor decides what to do."""

    def snapshot(self) -> dict[str, Any]:
        """The state to persist; override together with :meth:`restore`."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Adopt a persisted snapshot."""

    async def persist(self) -> None:
        if self.snapshot_store is not None and self.snapshot_key is not None:
            await self.snapshot_store.save_snapshot(self.snapshot_key, self.snapshot())

    async def receive(self, message: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} cannot handle {type(message).__name__}")

    async def receive_batch(self, batch: Sequence[Envelope]) -> None:
        """Handle queued messages in order. Errors a message's sender should see are
        raised by :meth:`receive` as exceptions derived from :class:`Exception` that the
        subclass lists in :attr:`reply_errors`; anything else crashes the actor."""
        for envelope in batch:
            try:
                value = await self.receive(envelope.message)
            except self.reply_errors as error:
                if envelope.reply is not None:
                    envelope.reply.fail(error)
                continue
            if envelope.reply is not None:
                envelope.reply.set(value)

    reply_errors: tuple[type[Exception], ...] = ()
    """Exceptions that are answers to the sender, not crashes of the actor."""


class ActorRef:
    """The only handle other code holds on an actor. It outlives restarts."""

    __slots__ = ("name", "_mailbox")

    def __init__(self, name: str, mailbox: Mailbox) -> None:
        self.name = name
        self._mailbox = mailbox

    def __repr__(self) -> str:
        return f"<ActorRef {self.name}>"

    @property
    def queued(self) -> int:
        return len(self._mailbox)

    async def tell(self, message: Any) -> None:
        """Fire and forget; waits only while the mailbox is full."""
        await self._mailbox.put(Envelope(message))

    def tell_nowait(self, message: Any) -> None:
        """Fire and forget; raises :class:`MailboxFull` instead of waiting."""
        self._mailbox.put_nowait(Envelope(message))

    async def send(self, message: Any) -> Reply:
        """Send for an answer without waiting for it: ``await reply.wait()`` later (what
        :meth:`ask` does at once). Unless the mailbox is full, the message is queued before
        this returns and without a pause, so messages sent one after another with no other
        await between are queued back to back: a batching actor takes them together."""
        reply = Reply()
        envelope = Envelope(message, reply)
        try:
            self._mailbox.put_nowait(envelope)
        except MailboxFull:
            await self._mailbox.put(envelope)
        return reply

    async def ask(self, message: Any) -> Any:
        """Send and wait for the answer. Raises what the actor raised for it,
        :class:`ActorCrashed` if the actor died handling it, :class:`ActorStopped`
        if it stopped first. Bound the wait with ``trio.fail_after`` around the call."""
        reply = Reply()
        await self._mailbox.put(Envelope(message, reply))
        return await reply.wait()


class ActorCell:
    """Runs one actor instance over its child's mailbox until stopped or crashed."""

    def __init__(self, name: str, actor: Actor, mailbox: Mailbox) -> None:
        self.name = name
        self.actor = actor
        self.mailbox = mailbox
        self._stop_requested = False
        self._idle_scope: trio.CancelScope | None = None
        self._batches = type(actor).receive_batch is not Actor.receive_batch

    def request_stop(self) -> None:
        """Finish the message batch in hand, then stop (without touching queued ones)."""
        self._stop_requested = True
        if self._idle_scope is not None:
            self._idle_scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        in_flight: Sequence[Envelope] = ()
        try:
            with single_error():
                async with trio.open_nursery() as nursery:
                    self.actor.nursery = nursery
                    await self.actor.on_start()
                    task_status.started()
                    while not self._stop_requested:
                        first: Envelope | None = None
                        with trio.CancelScope() as self._idle_scope:
                            try:
                                first = await self.mailbox.get()
                            except trio.EndOfChannel:
                                self._stop_requested = True
                        self._idle_scope = None
                        if first is None:
                            break
                        batch = [first]
                        # The default receive_batch handles one message at a time: take just
                        # one, so the messages behind a crash stay queued for the restart.
                        limit = self.actor.max_batch if self._batches else 1
                        while len(batch) < limit:
                            envelope = self.mailbox.get_nowait()
                            if envelope is None:
                                break
                            batch.append(envelope)
                        in_flight = batch
                        await self.actor.receive_batch(batch)
                        in_flight = ()
                    await self.actor.on_stop()
                    nursery.cancel_scope.cancel()
        except BaseException as error:
            crash = ActorCrashed(f"actor {self.name!r} crashed while handling this message")
            for envelope in in_flight:
                if envelope.reply is not None:
                    envelope.reply.fail(crash)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.actor.on_failure(error)
            raise
