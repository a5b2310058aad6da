"""A Redis client native to trio: RESP over trio streams, replies parsed by ``hiredis``.

:class:`RedisClient` keeps a small pool of connections, opened on demand and reused
(no background task: each call takes an idle connection or opens one, up to
``max_connections``, and beyond that waits its turn, first come first served). A call
sends its commands in one write (pipelining) and reads their replies; ``EVALSHA`` falls
back to loading the script when Redis answers ``NOSCRIPT`` (a restarted or flushed
server).

Failure rules:

* A connection leaves the pool for good the moment anything goes wrong on it (error,
  timeout, cancellation): it is never reused mid-reply. The next call opens a new
  one, which is how the client reconnects after Redis comes back.
* Connect (``connect_timeout``) and each call's write and read (``socket_timeout``) are
  bounded; a connection failure, a timeout or a reply Redis marks as transient
  (``LOADING``, ``BUSY``, ``MASTERDOWN``, ``READONLY``, ``TRYAGAIN``) raise
  :class:`~ojs_actors.core.BackendUnavailable` (HTTP 503), and so does a refused login
  (a wrong password at connect, or ``NOAUTH``: the URL has none and Redis wants one).
  Other error replies raise :class:`RedisReplyError`.
* Nothing is retried after a command was sent: a script whose reply was lost may have
  run, and running it again would not be idempotent.

URLs: ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS, verified
against the system's CAs unless an ``ssl_context`` is given); ``?db=N`` works too.
"""

from __future__ import annotations

import hashlib
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
import trio

from ...core import BackendUnavailable
from ..pool import ConnectionPool, SocketConnection

DEFAULT_PORT = 6379
READ_SIZE = 65_536
TRANSIENT_ERRORS = ("LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN")
"""Error replies that mean "not now" rather than "wrong": :class:`BackendUnavailable`."""


_CONNECTION_ERRORS = (OSError, trio.BrokenResourceError, trio.TooSlowError, hiredis.ProtocolError)
"""What a lost, refused or silent connection raises (as :class:`BackendUnavailable`)."""


class RedisReplyError(Exception):
    """Redis answered a command with an error (``-ERR …``, a failing script)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a Redis server is and how to log in, from its URL."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"a Redis URL starts with redis:// or rediss://, not {url!r}")
        db_text = parts.path.lstrip("/") or parse_qs(parts.query).get("db", ["0"])[0]
        try:
            db = int(db_text or 0)
        except ValueError:
            raise ValueError(f"the Redis database must be a number, not {db_text!r}") from None
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or DEFAULT_PORT,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=parts.scheme == "rediss",
        )

    def describe(self) -> str:
        """The URL without credentials, for messages."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"

    def login(self) -> list[tuple[Any, ...]]:
        """The commands that prepare a new connection: ``AUTH``, ``SELECT``."""
        commands: list[tuple[Any, ...]] = []
        if self.password is not None:
            user = (self.username,) if self.username else ()
            commands.append(("AUTH", *user, self.password))
        if self.db:
            commands.append(("SELECT", self.db))
        return commands


class _Connection(SocketConnection):
    """One RESP connection: writes packed commands, reads replies with a hiredis reader."""

    __slots__ = ("_reader",)

    unusable = False
    """Never set: a connection that saw an error is dropped by the pool anyway."""

    def __init__(self, stream: trio.abc.Stream, fd: int) -> None:
        super().__init__(stream, fd)
        self._reader = hiredis.Reader(encoding="utf-8")

    async def request(self, payload: bytes, count: int) -> list[Any]:
        """Send ``payload`` (``count`` packed commands) and read their ``count`` replies."""
        await self._stream.send_all(payload)
        return [await self.reply() for _ in range(count)]

    async def reply(self) -> Any:
        """The next reply, read as far as it takes."""
        reader = self._reader
        while (reply := reader.gets()) is False:  # not a whole reply buffered yet
            data = await self._stream.receive_some(READ_SIZE)
            if not data:
                raise trio.BrokenResourceError("Redis closed the connection")
            reader.feed(data)  # type: ignore[arg-type]  # any buffer; the stub says bytes
        return reply


class RedisClient:
    """A pool of RESP connections to one Redis server (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 16,
        connect_timeout: float = 2.0,
        socket_timeout: float | None = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Timeouts are in seconds of trio's clock; ``socket_timeout=None`` waits for every
        reply as long as it takes (for a program on a virtual clock, e.g. trio's
        ``MockClock``, whose jumps would otherwise expire them while Redis works)."""
        self.endpoint = Endpoint.from_url(url)
        self.connect_timeout = connect_timeout
        self.socket_timeout = math.inf if socket_timeout is None else socket_timeout
        self._ssl_context = ssl_context
        self.pool = ConnectionPool(self._connect, max_connections, "Redis")
        """The connections (``pool.open``: how many, idle or in use; ``pool.idle``)."""
        self.round_trips = 0
        """Requests sent so far (a pipeline is one): what the benchmark counts per job."""

    # -- calls ------------------------------------------------------------------------

    async def execute(self, *command: Any) -> Any:
        """One command's reply; :class:`RedisReplyError` if it is an error."""
        [reply] = await self.pipeline([command])
        return _checked(reply)

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The replies of ``commands``, sent in one write; error replies are returned as
        ``hiredis.ReplyError`` values (transient ones raise :class:`BackendUnavailable`)."""
        payload = b"".join([hiredis.pack_command(tuple(command)) for command in commands])
        try:
            async with self.pool.borrow() as loan:  # an error in the block drops the connection
                self.round_trips += 1
                with trio.fail_after(self.socket_timeout):
                    replies = await loan.connection.request(payload, len(commands))
        except _CONNECTION_ERRORS as error:
            raise self._unavailable(error) from error
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                if str(reply).startswith(TRANSIENT_ERRORS):
                    raise self._unavailable(reply)
                if str(reply).startswith("NOAUTH"):  # a password is required, none was given
                    raise self._login_refused(reply)
        return replies

    async def evalsha(self, script: str, sha: str, args: Sequence[Any]) -> Any:
        """Run a script by its SHA1 (``sha``), loading its text first if Redis lacks it."""
        [reply] = await self.evalsha_many([(script, sha, args)])
        return reply

    async def evalsha_many(self, calls: Sequence[tuple[str, str, Sequence[Any]]]) -> list[Any]:
        """Run scripts ``(text, sha, args)`` in order, in one round trip (each atomic on its
        own, not together); their replies. A script Redis lacked did not run: those are
        loaded and run again, in order (the others are not run twice)."""
        replies = await self.pipeline([("EVALSHA", sha, 0, *args) for _, sha, args in calls])
        missing = [
            index
            for index, reply in enumerate(replies)
            if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT")
        ]
        if missing:
            again: list[tuple[Any, ...]] = []
            for index in missing:
                script, sha, args = calls[index]
                again += [("SCRIPT", "LOAD", script), ("EVALSHA", sha, 0, *args)]
            rerun = await self.pipeline(again)
            for index, reply in zip(missing, rerun[1::2], strict=True):
                replies[index] = reply
        return [_checked(reply) for reply in replies]

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
        """Receive messages published on ``channel``: yields a function answering the next
        one's data, read on a connection of its own in subscribe mode, closed when the
        block exits. No timeout applies to that wait (a subscriber is idle by nature);
        a lost connection raises :class:`BackendUnavailable` from it."""
        command: tuple[Any, ...] = ("SUBSCRIBE", channel)
        try:
            connection = await self._connect()
            try:
                await connection.request(hiredis.pack_command(command), 1)
            except BaseException:
                await connection.close()
                raise
        except _CONNECTION_ERRORS as error:
            raise self._unavailable(error) from error

        async def receive() -> str:
            while True:
                try:
                    kind, _, data = await connection.reply()
                except _CONNECTION_ERRORS as error:
                    raise self._unavailable(error) from error
                if kind == "message":
                    return str(data)

        try:
            yield receive
        finally:
            await connection.close()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their call ends (and the
        calls waiting for one raise :class:`trio.ClosedResourceError`)."""
        await self.pool.aclose()

    # -- connections ------------------------------------------------------------------

    async def _connect(self) -> _Connection:
        endpoint = self.endpoint
        with trio.fail_after(self.connect_timeout):
            tcp = await trio.open_tcp_stream(endpoint.host, endpoint.port)
            stream: trio.abc.Stream = tcp
            try:
                if endpoint.tls:
                    context = self._ssl_context or ssl.create_default_context()
                    stream = trio.SSLStream(tcp, context, server_hostname=endpoint.host)
                    await stream.do_handshake()
                connection = _Connection(stream, tcp.socket.fileno())
                login = endpoint.login()
                if login:
                    payload = b"".join(hiredis.pack_command(command) for command in login)
                    for reply in await connection.request(payload, len(login)):
                        if isinstance(reply, hiredis.ReplyError):
                            raise self._login_refused(reply)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        return connection

    def _login_refused(self, reply: hiredis.ReplyError) -> BackendUnavailable:
        return BackendUnavailable(
            f"Redis at {self.endpoint.describe()} refused the login: {reply}",
            details={"backend": "redis", "error": "login_refused"},
        )

    def _unavailable(self, error: BaseException) -> BackendUnavailable:
        if isinstance(error, trio.TooSlowError):
            reason = "timed out"
        else:
            reason = str(error) or type(error).__name__
        return BackendUnavailable(
            f"Redis at {self.endpoint.describe()} is unreachable: {reason}",
            details={"backend": "redis", "error": type(error).__name__},
        )


def script_sha(text: str) -> str:
    """The SHA1 ``EVALSHA`` knows a script by."""
    return hashlib.sha1(text.encode()).hexdigest()


def _checked(reply: Any) -> Any:
    if isinstance(reply, hiredis.ReplyError):
        raise RedisReplyError(str(reply))
    return reply
