"""The one part of the Redis backend that talks to Redis: :class:`RedisConnection`.

It speaks RESP natively on trio (:class:`~ojs_actors.backends.redis.client.RedisClient`:
a small pool, pipelining, ``EVALSHA`` with a ``NOSCRIPT`` fallback, timeouts,
reconnection); no asyncio is involved. Every call is shielded from trio cancellation
(a claim must not vanish between Redis and the caller) and bounded by the socket
timeout instead; connection errors surface as
:class:`~ojs_actors.core.BackendUnavailable` (HTTP 503). Nothing is retried once sent:
a script whose reply was lost may have run, and re-running it would not be idempotent.

The other parts use only :attr:`~RedisConnection.prefix`, :meth:`~RedisConnection.script`
(every write and every read of several keys) and three single-key reads
(:meth:`~RedisConnection.hget`, :meth:`~RedisConnection.hgetall`,
:meth:`~RedisConnection.zrange_withscores`), never the client.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import trio

from ...core import BackendUnavailable
from .client import RedisClient, script_sha
from .lua import SCRIPTS

DEFAULT_URL = "redis://localhost:6379"
DEFAULT_PREFIX = "ojs:"


class RedisConnection:
    """A Redis server and the key prefix of one backend's data on it, with every script
    of :data:`~ojs_actors.backends.redis.lua.SCRIPTS` loaded.

    An async-lifetime object: :meth:`start` connects and loads the scripts, :meth:`close`
    disconnects; :meth:`ping` and :meth:`reset` make it the lifetime part of an
    :class:`~ojs_actors.backends.assembly.AssembledBackend`. Parts built on it
    (``RedisJobs``, ``RedisSnapshots``, ``RedisEventLog``) share its pool."""

    needs_asyncio = False

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        socket_timeout: float | None = 5.0,
        connect_timeout: float = 2.0,
        max_connections: int = 16,
    ) -> None:
        self.url = url or DEFAULT_URL
        self.prefix = prefix
        """Every key of the backend starts with it; scripts get it as ``ARGV[1]``."""
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._client: RedisClient | None = None
        self._shas = {name: script_sha(text) for name, text in SCRIPTS.items()}

    @property
    def client(self) -> RedisClient:
        client = self._client
        if client is None:
            raise BackendUnavailable(
                "The Redis backend is not connected.", details={"backend": "redis"}
            )
        return client

    async def start(self) -> None:
        try:
            self._client = RedisClient(
                self.url,
                max_connections=self._max_connections,
                connect_timeout=self._connect_timeout,
                socket_timeout=self._socket_timeout,
            )
        except ValueError as error:
            raise BackendUnavailable(str(error), details={"backend": "redis"}) from error
        try:
            await self.ping()
            await self._shielded(
                self.client.pipeline([("SCRIPT", "LOAD", text) for text in SCRIPTS.values()])
            )
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with trio.CancelScope(shield=True):
                await client.aclose()

    @staticmethod
    async def _shielded(call: Any) -> Any:
        with trio.CancelScope(shield=True):
            return await call

    async def script(self, name: str, *args: Any) -> Any:
        """Run the script ``name`` (``EVALSHA``) with ``ARGV`` = the prefix, then ``args``;
        its reply."""
        call = self.client.evalsha(SCRIPTS[name], self._shas[name], (self.prefix, *args))
        return await self._shielded(call)

    async def scripts(self, *calls: tuple[str, Sequence[Any]]) -> list[Any]:
        """Run the scripts ``(name, args)`` in order in one round trip (pipelined: each is
        atomic on its own, not together); their replies."""
        prefix = self.prefix
        batch = [(SCRIPTS[name], self._shas[name], (prefix, *args)) for name, args in calls]
        replies: list[Any] = await self._shielded(self.client.evalsha_many(batch))
        return replies

    async def hget(self, key: str, field: str) -> str | None:
        value: str | None = await self._shielded(self.client.execute("HGET", key, field))
        return value

    async def hgetall(self, key: str) -> dict[str, str]:
        flat: list[str] = await self._shielded(self.client.execute("HGETALL", key))
        return dict(zip(flat[::2], flat[1::2], strict=True))

    async def zrange_withscores(self, key: str, start: int, end: int) -> list[tuple[str, float]]:
        """Members of the sorted set ``key`` from rank ``start`` to ``end`` with their scores."""
        flat: list[str] = await self._shielded(
            self.client.execute("ZRANGE", key, start, end, "WITHSCORES")
        )
        return [(member, float(score)) for member, score in zip(flat[::2], flat[1::2], strict=True)]

    async def hscan(self, key: str, cursor: str, count: int) -> tuple[str, dict[str, str]]:
        """One step of ``HSCAN`` over the hash ``key``: the next cursor (``"0"``: done) and
        about ``count`` fields with their values (a field may come twice across steps)."""
        reply: list[Any] = await self._shielded(
            self.client.execute("HSCAN", key, cursor, "COUNT", count)
        )
        following, flat = reply
        return str(following), dict(zip(flat[::2], flat[1::2], strict=True))

    async def ping(self) -> float:
        """Round-trip latency in milliseconds; raises if Redis is unreachable."""
        started = time.perf_counter()
        await self._shielded(self.client.execute("PING"))
        return (time.perf_counter() - started) * 1000.0

    async def reset(self) -> None:
        """Delete every key under the prefix (all the parts' data)."""
        await self.script("reset")
