"""The connection pool of the native clients (:class:`~.redis.client.RedisClient`,
:class:`~.nats.client.NatsClient`): their protocols differ, their pooling does not.

A :class:`ConnectionPool` opens connections on demand and reuses them, with no
background task: each call borrows an idle connection or opens one, up to
``max_connections``, and beyond that waits its turn, first come first served. The rules:

* A connection that saw anything go wrong during a call (an error, a timeout, a
  cancellation: anything escaping the ``async with`` block) is dropped, never reused
  mid-reply; the next call opens a new one. A connection the client marks ``unusable``
  is dropped when its call ends too.
* An idle connection is checked before reuse (:meth:`SocketConnection.stale`) and
  replaced if the server wrote to it meanwhile.
* Borrowing an idle connection has no scheduling point, and the turns are fair: a freed
  one goes to the longest waiting call, so a call looping back without a checkpoint
  cannot take it first and starve the others.
* :meth:`ConnectionPool.aclose` closes the idle connections; the calls waiting for a
  turn go on and raise :class:`trio.ClosedResourceError`, those in flight finish and
  close their connection after them.
"""

from __future__ import annotations

import math
import select
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import trio


class Pooled(Protocol):
    """What the pool needs of a connection."""

    def stale(self) -> bool:
        """Whether the idle connection must not be reused (checked before each reuse)."""
        ...

    @property
    def unusable(self) -> bool:
        """Whether the connection must not be reused after its call (checked after it)."""
        ...

    async def close(self) -> None: ...


C = TypeVar("C", bound=Pooled)


class SocketConnection:
    """A connection over one socket: its stream, the stale check of its descriptor ``fd``
    and its closing (a base of the clients' connection classes)."""

    __slots__ = ("_fd", "_poller", "_stream")

    def __init__(self, stream: trio.abc.Stream, fd: int) -> None:
        self._stream = stream
        self._fd = fd
        self._poller: Any = None
        if hasattr(select, "poll"):
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN)

    def stale(self) -> bool:
        """Whether the idle connection has something to read: nothing is owed to it, so
        that is the server's end of file (it restarted, or closed idle clients), or
        something it sent unasked (an error, a ``PING`` of an idle client); any of them
        makes it not worth keeping. Checked before reuse, so a request is never sent on
        a connection already closed.

        ``poll`` where there is one: ``select`` refuses descriptors from ``FD_SETSIZE``
        (1024) up, which a busy server reaches (Windows has no ``poll``, and no such limit)."""
        if self._poller is not None:
            return bool(self._poller.poll(0))
        readable, _, _ = select.select([self._fd], [], [], 0)
        return bool(readable)

    async def close(self) -> None:
        await trio.aclose_forcefully(self._stream)


class ConnectionPool(Generic[C]):
    """Connections opened by ``connect``, at most ``max_connections`` at a time; ``name``
    (``"Redis"``) names the client in errors. See the module docstring."""

    __slots__ = ("_closed", "_connect", "_name", "_turns", "idle", "open")

    def __init__(
        self, connect: Callable[[], Awaitable[C]], max_connections: int, name: str
    ) -> None:
        self._connect = connect
        self._name = name
        self.open = 0
        """Connections open, idle or in use."""
        self.idle: list[C] = []
        """The idle connections (the same list for the pool's life)."""
        # A call holds one of these while it uses a connection, so at most max_connections
        # are open; the limiter hands a freed one to the longest waiting call (FIFO), so a
        # call looping back without a checkpoint cannot take it first and starve the others.
        self._turns = trio.CapacityLimiter(max_connections)
        self._closed = False

    def borrow(self) -> Loan[C]:
        """A connection for one call: ``async with pool.borrow() as loan:`` then
        ``loan.connection``. It goes back to the pool when the block ends, or is dropped
        if an exception escapes it (unless ``loan.intact`` was set: nothing was sent)."""
        return Loan(self)

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their call ends."""
        self._closed = True
        self._turns.total_tokens = math.inf  # the waiting calls go on, to find it closed
        idle = self.idle[:]
        self.idle.clear()
        for connection in idle:
            await self._drop(connection)

    async def _take(self) -> C:
        """An idle connection (no scheduling point on this path: it is every call's), else a
        new one. The caller holds a turn: the calls holding one use at most that many
        connections, and one opens only when none is idle, so at most ``max_connections``
        are open."""
        if self._closed:
            raise trio.ClosedResourceError(f"the {self._name} client is closed")
        idle = self.idle
        while idle:
            connection = idle.pop()
            if not connection.stale():
                return connection
            await self._drop(connection)
        self.open += 1
        try:
            return await self._connect()
        except BaseException:
            self.open -= 1
            raise

    async def _give_back(self, connection: C) -> None:
        if self._closed or connection.unusable:
            await self._drop(connection)
        else:
            self.idle.append(connection)

    async def _drop(self, connection: C) -> None:
        self.open -= 1
        await connection.close()


class Loan(Generic[C]):
    """One call's turn and connection (from :meth:`ConnectionPool.borrow`): an async
    context manager; the loan itself is the turn's borrower."""

    __slots__ = ("_pool", "connection", "intact")

    connection: C
    """The borrowed connection (set on entering the block)."""
    intact: bool
    """Set it when nothing was sent yet and the connection is as it was: an exception
    escaping the block then gives the connection back instead of dropping it."""

    def __init__(self, pool: ConnectionPool[C]) -> None:
        self._pool = pool
        self.intact = False

    async def __aenter__(self) -> Loan[C]:
        pool = self._pool
        turns = pool._turns
        try:
            turns.acquire_on_behalf_of_nowait(self)  # no scheduling point
        except trio.WouldBlock:
            await turns.acquire_on_behalf_of(self)
        try:
            self.connection = await pool._take()
        except BaseException:
            turns.release_on_behalf_of(self)
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pool = self._pool
        try:
            if kind is None or self.intact:
                await pool._give_back(self.connection)
            else:
                await pool._drop(self.connection)  # never reused mid-reply
        finally:
            pool._turns.release_on_behalf_of(self)
