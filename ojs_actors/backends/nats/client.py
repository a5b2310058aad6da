"""A NATS client native to trio: the protocol of :mod:`.protocol` over trio streams.

:class:`NatsClient` keeps a small pool of connections, opened on demand and reused (no
background task: each call takes an idle connection or opens one, up to
``max_connections``, and beyond that waits its turn, first come first served). Each
connection subscribes to an inbox of its own, ``_INBOX.<random>.>``; a call gives each
of its requests a reply subject under it, sends them all in one write (pipelining: see
:meth:`NatsClient.requests`) and reads until every one is answered, answering the
server's ``PING`` on the way. A reply nobody waits for (a second responder's, a reply
to a call that gave up) is ignored.

Failure rules (those of :class:`~ojs_actors.backends.redis.client.RedisClient`, and of
the pool they share, :mod:`ojs_actors.backends.pool`):

* A connection leaves the pool for good the moment anything goes wrong on it (error,
  ``-ERR``, timeout, cancellation): it is never reused mid-reply. The next call opens
  a new one, which is how the client reconnects after nats-server restarts. An idle
  connection the server wrote to (its end of file, or a ``PING`` of an idle client) is
  replaced before use, and so is one whose server announced lame duck mode.
* Connect (``connect_timeout``, for each URL tried) and each call's write and read
  (``request_timeout``) are bounded; a refused, lost or silent connection, a timeout or
  a ``-ERR`` raise :class:`~ojs_actors.core.BackendUnavailable` (HTTP 503) naming the
  server, and so does a refused login (``-ERR 'Authorization Violation'``). A reply
  with status 503 (no responders: JetStream not enabled, no stream on that subject)
  raises :class:`NoResponders`, a :class:`BackendUnavailable` too.
* Nothing is retried after a request was written: a JetStream publish whose ack was
  lost may have been stored.

URLs:

* ``nats://host[:port]`` (port 4222 by default), ``nats://user:password@host``,
  ``nats://token@host`` (a user name without a password is a token); credentials are
  URL-decoded (``%40`` for ``@``).
* ``tls://host[:port]``: TLS after the server's ``INFO`` (the NATS way), verified
  against the system's CAs unless ``ssl_context`` is given. A ``nats://`` server whose
  ``INFO`` says ``tls_required`` is upgraded the same way. (A server configured with
  ``handshake_first`` is not supported.)
* ``nats://a:4222,nats://b:4222``: several servers (a cluster); a new connection tries
  the one that answered last first, then the others in order, and the call fails only
  when none answers.

``creds``: a NATS ``.creds`` file (a user JWT and its nkey seed, as ``nsc`` writes it):
the JWT goes in ``CONNECT`` with the server's nonce signed by the seed. It needs the
``nkeys`` package (``pip install nkeys``), which is not a dependency of this project.
"""

from __future__ import annotations

import base64
import math
import re
import secrets
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import trio

from ...core import BackendUnavailable
from ..pool import ConnectionPool, SocketConnection
from .protocol import (
    PING,
    PONG,
    Err,
    Event,
    Info,
    Msg,
    Parser,
    Ping,
    Pong,
    ProtocolError,
    check_subject,
    connect,
    pub,
    sub,
)

DEFAULT_PORT = 4222
READ_SIZE = 65_536
INBOX_SID = 1
"""The connection's inbox subscription, ``_INBOX.<random>.>``: where replies arrive."""
SUBSCRIPTION_SID = 2
"""The subscription of a :meth:`NatsClient.subscribe` connection."""
LANG = "python-trio"
STATUS_NO_RESPONDERS = 503
STATUS_HEARTBEAT = 100

Replies = Literal["one", "none", "fire", "stream"]


class NoResponders(BackendUnavailable):
    """A request's reply was status 503: nothing listens on its subject (JetStream not
    enabled, or no stream captures the subject)."""


class _ServerError(Exception):
    """The server sent ``-ERR`` (it closes the connection after most of them)."""


_CONNECTION_ERRORS = (
    OSError,
    trio.BrokenResourceError,
    trio.TooSlowError,
    ProtocolError,
    _ServerError,
)
"""What a lost, refused or silent connection raises (as :class:`BackendUnavailable`)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a NATS server is and how to log in, from its URL."""

    host: str
    port: int = DEFAULT_PORT
    tls: bool = False
    user: str | None = None
    password: str | None = None
    token: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        url = url.strip()
        if "://" not in url:
            raise ValueError(f"a NATS URL starts with nats:// or tls://, not {url!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("nats", "tls"):
            raise ValueError(f"a NATS URL starts with nats:// or tls://, not {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"a NATS URL has no path nor query: {url!r}")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"the port of {url!r} is not a number") from None
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        token = None
        if user is not None and password is None:
            user, token = None, user
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            tls=parts.scheme == "tls",
            user=user,
            password=password,
            token=token,
        )

    @classmethod
    def from_urls(cls, urls: str) -> tuple[Endpoint, ...]:
        """The servers of a comma-separated list of URLs, in order."""
        endpoints = tuple(cls.from_url(url) for url in urls.split(",") if url.strip())
        if not endpoints:
            raise ValueError("no NATS URL given")
        return endpoints

    def describe(self) -> str:
        """The URL without credentials, for messages."""
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"

    def credentials(self) -> dict[str, str]:
        """The ``CONNECT`` fields of the URL's credentials."""
        if self.token is not None:
            return {"auth_token": self.token}
        if self.user is not None:
            return {"user": self.user, "pass": self.password or ""}
        return {}


@dataclass(frozen=True, slots=True)
class Request:
    """One request of :meth:`NatsClient.requests`: ``replies`` is how many it waits for:
    ``"one"``; ``"none"`` (sent without a reply subject, then confirmed read by the
    server with a ``PING``); ``"fire"`` (sent without a reply subject, not confirmed: a
    hint that may be lost with the connection); or ``"stream"``, the messages up to and
    including the first with a status (204 end of batch, 404, 408, ...), idle heartbeats
    (100) left out."""

    subject: str
    data: bytes = b""
    headers: Mapping[str, str] | None = None
    replies: Replies = "one"


_CREDS_BLOCK = re.compile(
    r"-{3,}[^\n]*BEGIN[^\n]*-{3,}[ \t]*\r?\n\s*(\S+)\s*\r?\n[ \t]*-{3,}[^\n]*END[^\n]*-{3,}"
)


def read_creds(path: str | Path) -> tuple[str, str]:
    """The user JWT and nkey seed of a ``.creds`` file."""
    blocks = _CREDS_BLOCK.findall(Path(path).read_text())
    if len(blocks) < 2:
        raise ValueError(f"{path} is not a NATS .creds file (a user JWT and an nkey seed)")
    return blocks[0], blocks[1]


def _nkeys() -> Any:
    try:
        import nkeys  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise ImportError(
            "logging in to NATS with a .creds file needs the nkeys package: pip install nkeys"
        ) from None
    return nkeys


def _version(info: Mapping[str, Any]) -> tuple[int, int, int]:
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", str(info.get("version", "")))
    if match is None:
        return (0, 0, 0)
    major, minor, patch = (int(part) for part in match.groups())
    return (major, minor, patch)


class _Connection(SocketConnection):
    """One NATS connection: its stream, parser, inbox and the events read but not yet
    handled (between calls there are none: each call handles all it read)."""

    __slots__ = (
        "_events",
        "_next_reply",
        "_on_info",
        "_parser",
        "endpoint",
        "inbox",
        "info",
        "unusable",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        fd: int,
        parser: Parser,
        endpoint: Endpoint,
        info: dict[str, Any],
        on_info: Callable[[dict[str, Any]], None],
    ) -> None:
        super().__init__(stream, fd)  # stale before reuse if the server wrote to it meanwhile
        self._parser = parser
        self._events: deque[Event] = deque()
        self._next_reply = 0
        self._on_info = on_info
        self.endpoint = endpoint
        self.info = info
        self.inbox = f"_INBOX.{secrets.token_urlsafe(16)}."
        self.unusable = False
        """Set when the connection must not be reused (``-ERR``, lame duck mode)."""

    def reply_subject(self) -> str:
        """A reply subject no other call on this connection ever had."""
        self._next_reply += 1
        return f"{self.inbox}{self._next_reply}"

    async def send(self, payload: bytes) -> None:
        await self._stream.send_all(payload)

    async def event(self) -> Event:
        """The next event, read as far as it takes; ``INFO`` is recorded on the way."""
        events = self._events
        while not events:
            data = await self._stream.receive_some(READ_SIZE)
            if not data:
                raise trio.BrokenResourceError("NATS closed the connection")
            events.extend(self._parser.feed(data))
        event = events.popleft()
        if event.__class__ is Info:
            self._info(event)
        return event

    def _info(self, event: Info) -> None:
        self.info = event.options
        if event.options.get("ldm"):
            self.unusable = True  # lame duck mode: the server is going away
        self._on_info(event.options)

    async def exchange(
        self,
        payload: bytes,
        waiting: dict[str, int],
        modes: Sequence[Replies],
        pong: bool,
    ) -> list[list[Msg]]:
        """Send ``payload`` and read until each reply subject of ``waiting`` (subject ->
        index in ``modes``) is answered, and the ``PONG`` if ``pong``; the replies by
        index. Events read past the end are handled too: none is left for the next call."""
        results: list[list[Msg]] = [[] for _ in modes]
        await self._stream.send_all(payload)
        remaining = len(waiting) + pong
        while remaining:
            event = await self.event()
            kind = event.__class__
            if kind is Msg:
                message: Msg = event  # type: ignore[assignment]
                index = waiting.get(message.subject)
                if index is None:
                    continue  # a late reply: nobody waits for it
                status = message.status
                if modes[index] == "stream":
                    if status == STATUS_HEARTBEAT:
                        continue
                    results[index].append(message)
                    if status is None:
                        continue
                else:
                    results[index].append(message)
                del waiting[message.subject]
                remaining -= 1
            elif kind is Ping:
                await self._stream.send_all(PONG)
            elif kind is Pong:
                if pong:
                    pong = False
                    remaining -= 1
            elif kind is Err:
                self.unusable = True
                raise _ServerError(event.text)  # type: ignore[union-attr]
        await self._leftovers()
        return results

    async def _leftovers(self) -> None:
        """Handle the events read beyond the call's last reply: answer ``PING``; an
        ``-ERR`` makes the connection unusable; late replies are dropped."""
        answer = False
        while self._events:
            event = self._events.popleft()
            kind = event.__class__
            if kind is Ping:
                answer = True
            elif kind is Err:
                self.unusable = True
            elif kind is Info:
                self._info(event)  # type: ignore[arg-type]
        if answer and not self.unusable:
            await self._stream.send_all(PONG)


class NatsClient:
    """A pool of connections to a NATS server or cluster (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 8,
        connect_timeout: float = 5.0,
        request_timeout: float | None = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "ojs-actors",
        creds: str | None = None,
    ) -> None:
        """Timeouts are in seconds of trio's clock; ``request_timeout=None`` waits for
        every reply as long as it takes (for a program on a virtual clock, e.g. trio's
        ``MockClock``, whose jumps would otherwise expire them while the server works).
        ``creds`` is the path of a ``.creds`` file (needs ``pip install nkeys``)."""
        self.endpoints = Endpoint.from_urls(url)
        self.connect_timeout = connect_timeout
        self.request_timeout = math.inf if request_timeout is None else request_timeout
        self.name = name
        self.creds = creds
        if creds is not None:
            _nkeys()  # ImportError now, naming the package, rather than at the first call
            read_creds(creds)  # and a file that is not one fails now too
        self._ssl_context = ssl_context
        self.pool = ConnectionPool(self._connect, max_connections, "NATS")
        """The connections (``pool.open``: how many, idle or in use; ``pool.idle``)."""
        self._preferred = 0  # the endpoint a new connection tries first
        self.round_trips = 0
        """Calls that waited for the server so far (a pipeline of requests is one)."""
        self.messages_out = 0
        """Messages written so far (``PUB`` and ``HPUB``)."""
        self.server_info: dict[str, Any] = {}
        """The last ``INFO`` a server sent (empty before the first connection)."""
        self.server_version: tuple[int, int, int] = (0, 0, 0)
        """The version in :attr:`server_info`."""

    @property
    def endpoint(self) -> Endpoint:
        """The server new connections try first (the first URL, or the last that answered)."""
        return self.endpoints[self._preferred]

    # -- calls ------------------------------------------------------------------------

    async def request(
        self, subject: str, data: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Msg:
        """The reply to ``data`` sent to ``subject``."""
        [[reply]] = await self.requests([Request(subject, data, headers)])
        return reply

    async def requests(self, calls: Sequence[Request]) -> list[list[Msg]]:
        """The replies of ``calls``, all sent in one write, each with a reply subject of
        its own (but ``"none"`` calls: those are followed by a ``PING``, and the call
        waits for its ``PONG``, so the server has read them all), then read until every
        call is answered: one round trip, whatever the number of calls. The replies are
        listed by call: one message, none, or a stream's. :class:`NoResponders` if a
        reply was status 503 (the call's other replies were read: the connection stays)."""
        if not calls:
            return []
        endpoint = self.endpoint
        try:
            async with self.pool.borrow() as loan:  # an error in the block drops the connection
                connection = loan.connection
                endpoint = connection.endpoint
                loan.intact = True  # a bad subject or header: nothing was sent, it goes back
                payload, waiting, modes, pong = self._encode(connection, calls)
                loan.intact = False
                self.round_trips += 1
                self.messages_out += len(calls)
                with trio.fail_after(self.request_timeout):
                    results = await connection.exchange(payload, waiting, modes, pong)
        except _CONNECTION_ERRORS as error:
            raise self._unavailable(error, endpoint) from error
        for call, replies in zip(calls, results, strict=True):
            for reply in replies:
                if reply.status == STATUS_NO_RESPONDERS:
                    raise self._no_responders(call.subject, endpoint)
        return results

    async def publish(
        self, subject: str, data: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> None:
        """Send ``data`` to ``subject`` without a reply subject; returns once the server
        has read it (a ``PING`` follows it, and its ``PONG`` is awaited)."""
        await self.requests([Request(subject, data, headers, replies="none")])

    async def ping(self) -> float:
        """Milliseconds for a ``PING`` to come back as ``PONG``."""
        endpoint = self.endpoint
        try:
            async with self.pool.borrow() as loan:
                connection = loan.connection
                endpoint = connection.endpoint
                self.round_trips += 1
                with trio.fail_after(self.request_timeout):
                    started = trio.current_time()
                    await connection.exchange(PING, {}, (), True)
                    elapsed = trio.current_time() - started
        except _CONNECTION_ERRORS as error:
            raise self._unavailable(error, endpoint) from error
        return elapsed * 1000

    @asynccontextmanager
    async def subscribe(self, subject: str) -> AsyncIterator[Callable[[], Awaitable[Msg]]]:
        """Receive the messages published on ``subject`` (wildcards allowed): yields a
        function answering the next one, read on a connection of its own (not one of the
        pool's), closed when the block exits. The subscription is in place when the block
        starts (the server answered a ``PING`` sent after it). No timeout applies to the
        wait (a subscriber is idle by nature); a lost connection raises
        :class:`BackendUnavailable` from it. One task at a time may wait on it."""
        payload = sub(check_subject(subject), SUBSCRIPTION_SID) + PING
        endpoint = self.endpoint
        try:
            connection = await self._connect()
            endpoint = connection.endpoint
            try:
                with trio.fail_after(self.request_timeout):
                    await connection.exchange(payload, {}, (), True)
            except BaseException:
                await connection.close()
                raise
        except _CONNECTION_ERRORS as error:
            raise self._unavailable(error, endpoint) from error

        async def receive() -> Msg:
            while True:
                try:
                    event = await connection.event()
                    kind = event.__class__
                    if kind is Msg and event.sid == SUBSCRIPTION_SID:  # type: ignore[union-attr]
                        return event  # type: ignore[return-value]
                    if kind is Ping:
                        await connection.send(PONG)
                    elif kind is Err:
                        raise _ServerError(event.text)  # type: ignore[union-attr]
                except _CONNECTION_ERRORS as error:
                    raise self._unavailable(error, endpoint) from error

        try:
            yield receive
        finally:
            await connection.close()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their call ends (and the
        calls waiting for one raise :class:`trio.ClosedResourceError`)."""
        await self.pool.aclose()

    # -- encoding -----------------------------------------------------------------------

    def _encode(
        self, connection: _Connection, calls: Sequence[Request]
    ) -> tuple[bytes, dict[str, int], list[Replies], bool]:
        """The write of ``calls`` on ``connection``, the reply subjects it waits on (by
        call index), each call's reply mode and whether a ``PING`` ends it."""
        max_payload = connection.info.get("max_payload")
        parts: list[bytes] = []
        waiting: dict[str, int] = {}
        modes: list[Replies] = []
        pong = False
        for index, call in enumerate(calls):
            mode = call.replies
            modes.append(mode)
            if mode == "none" or mode == "fire":
                reply = None
                pong = pong or mode == "none"
            elif mode == "one" or mode == "stream":
                reply = connection.reply_subject()
                waiting[reply] = index
            else:
                raise ValueError(f"replies is 'one', 'none', 'fire' or 'stream', not {mode!r}")
            frame = pub(call.subject, call.data, reply, call.headers)
            if (
                max_payload is not None
                and len(frame) > max_payload
                and (_payload_size(frame) > max_payload)
            ):
                raise ValueError(
                    f"a message of {_payload_size(frame)} bytes to {call.subject!r} exceeds "
                    f"the server's max_payload ({max_payload} bytes)"
                )
            parts.append(frame)
        if pong:
            parts.append(PING)
        return b"".join(parts), waiting, modes, pong

    # -- connections ------------------------------------------------------------------

    async def _connect(self) -> _Connection:
        """A new connection to the preferred server, else the others in order."""
        count = len(self.endpoints)
        failures: list[tuple[Endpoint, BaseException]] = []
        for step in range(count):
            index = (self._preferred + step) % count
            endpoint = self.endpoints[index]
            try:
                connection = await self._connect_to(endpoint)
            except _CONNECTION_ERRORS as error:
                if count == 1:
                    raise
                failures.append((endpoint, error))
                continue
            self._preferred = index
            return connection
        reasons = "; ".join(
            f"{endpoint.describe()}: {_reason(error)}" for endpoint, error in failures
        )
        raise BackendUnavailable(
            f"no NATS server answered ({reasons})",
            details={"backend": "nats", "error": "unreachable"},
        )

    async def _connect_to(self, endpoint: Endpoint) -> _Connection:
        with trio.fail_after(self.connect_timeout):
            tcp = await trio.open_tcp_stream(endpoint.host, endpoint.port)
            stream: trio.abc.Stream = tcp
            try:
                parser = Parser()
                info = await _greeting(tcp, parser)
                if endpoint.tls or info.get("tls_required"):
                    if not (info.get("tls_required") or info.get("tls_available")):
                        raise BackendUnavailable(
                            f"NATS at {endpoint.describe()} does not offer TLS",
                            details={"backend": "nats", "error": "no_tls"},
                        )
                    context = self._ssl_context or ssl.create_default_context()
                    stream = trio.SSLStream(tcp, context, server_hostname=endpoint.host)
                    await stream.do_handshake()
                if not info.get("headers"):
                    raise BackendUnavailable(
                        f"NATS at {endpoint.describe()} does not support headers "
                        f"(nats-server {info.get('version', '?')}; 2.2 or later does)",
                        details={"backend": "nats", "error": "no_headers"},
                    )
                self._record_info(info)
                connection = _Connection(
                    stream, tcp.socket.fileno(), parser, endpoint, info, self._record_info
                )
                options = self._connect_options(endpoint, info)
                greeting = connect(options) + sub(connection.inbox + ">", INBOX_SID) + PING
                try:
                    await connection.exchange(greeting, {}, (), True)
                except _ServerError as error:
                    raise self._login_refused(str(error), endpoint) from None
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        return connection

    def _connect_options(self, endpoint: Endpoint, info: Mapping[str, Any]) -> dict[str, Any]:
        from ... import __version__

        options: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "headers": True,
            "no_responders": True,
            "protocol": 1,
            "echo": True,
            "tls_required": endpoint.tls or bool(info.get("tls_required")),
            "name": self.name,
            "lang": LANG,
            "version": __version__,
        }
        options.update(endpoint.credentials())
        if self.creds is not None:
            jwt, seed = read_creds(self.creds)
            options["jwt"] = jwt
            nonce = info.get("nonce")
            if nonce:
                keys = _nkeys().from_seed(seed.encode())
                try:
                    signature = keys.sign(str(nonce).encode())
                finally:
                    keys.wipe()
                options["sig"] = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
        return options

    def _record_info(self, info: dict[str, Any]) -> None:
        self.server_info = info
        self.server_version = _version(info)

    def _login_refused(self, text: str, endpoint: Endpoint) -> BackendUnavailable:
        if "authoriz" in text.lower() or "authentic" in text.lower():
            return BackendUnavailable(
                f"NATS at {endpoint.describe()} refused the login: {text}",
                details={"backend": "nats", "error": "login_refused"},
            )
        return self._unavailable(_ServerError(text), endpoint)

    def _unavailable(self, error: BaseException, endpoint: Endpoint) -> BackendUnavailable:
        return BackendUnavailable(
            f"NATS at {endpoint.describe()} is unreachable: {_reason(error)}",
            details={"backend": "nats", "error": type(error).__name__.lstrip("_")},
        )

    def _no_responders(self, subject: str, endpoint: Endpoint) -> NoResponders:
        return NoResponders(
            f"NATS at {endpoint.describe()}: no responders on {subject!r} (is JetStream "
            "enabled, and does a stream capture that subject?)",
            details={"backend": "nats", "error": "no_responders", "subject": subject},
        )


async def _greeting(stream: trio.SocketStream, parser: Parser) -> dict[str, Any]:
    """The server's first ``INFO``, read in plain text (before any TLS)."""
    while True:
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise trio.BrokenResourceError("NATS closed the connection before its INFO")
        events = parser.feed(data)
        if events:
            first = events[0]
            if not isinstance(first, Info) or len(events) > 1:
                raise ProtocolError(f"a NATS server greets with INFO alone, not {first!r}")
            return first.options


def _payload_size(frame: bytes) -> int:
    """The payload size (headers and data) of one encoded ``PUB``/``HPUB``."""
    line_end = frame.index(b"\r\n")
    return int(frame[:line_end].rsplit(b" ", 1)[1])


def _reason(error: BaseException) -> str:
    if isinstance(error, trio.TooSlowError):
        return "timed out"
    if isinstance(error, _ServerError):
        return f"-ERR {error}"
    return str(error) or type(error).__name__
