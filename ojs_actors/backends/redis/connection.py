"""The one part of the Redis backend that talks to Redis: :class:`RedisConnection`.

Bridge. redis-py's asyncio client runs on the shared asyncio bridge
(:mod:`ojs_actors.backends.bridge`), which :func:`~ojs_actors.backends.open_backend`
opens around the backend's lifetime (``needs_asyncio``); :meth:`RedisConnection.start`
takes it and :meth:`RedisConnection.close` closes the client on it before it closes.
Every call goes through :meth:`RedisConnection.run`, which runs one asyncio
coroutine on the bridge from whatever trio task calls it. The wait is
shielded from trio cancellation (a claim must not vanish between Redis and the
caller); socket timeouts keep it finite, and connection errors surface as
:class:`~ojs_actors.core.BackendUnavailable` (HTTP 503). The client does not
retry on its own: a script whose reply was lost may have run, and re-running it
would not be idempotent.

The other parts use only :attr:`~RedisConnection.prefix`, :meth:`~RedisConnection.script`
(every write and every read of several keys) and three single-key reads
(:meth:`~RedisConnection.hget`, :meth:`~RedisConnection.hgetall`,
:meth:`~RedisConnection.zrange_withscores`), never the client, so a connection speaking
RESP natively on trio can replace this one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio

from ...core import BackendUnavailable
from ..bridge import AsyncioBridge, current_asyncio_bridge
from .lua import SCRIPTS

T = TypeVar("T")

DEFAULT_URL = "redis://localhost:6379"
DEFAULT_PREFIX = "ojs:"


def _describe(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisConnection:
    """A Redis server and the key prefix of one backend's data on it, with every script
    of :data:`~ojs_actors.backends.redis.lua.SCRIPTS` registered.

    An async-lifetime object: :meth:`start` connects (on the asyncio bridge, which it
    ``needs_asyncio``), :meth:`close` disconnects; :meth:`ping` and :meth:`reset` make it
    the lifetime part of an :class:`~ojs_actors.backends.assembly.AssembledBackend`.
    Parts built on it (``RedisJobs``, ``RedisSnapshots``, ``RedisEventLog``) share it."""

    needs_asyncio = True

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self.url = url or DEFAULT_URL
        self.prefix = prefix
        """Every key of the backend starts with it; scripts get it as ``ARGV[1]``."""
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._bridge: AsyncioBridge | None = None
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    async def start(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._bridge = current_asyncio_bridge()
        self._client = aioredis.from_url(
            self.url,
            decode_responses=True,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._connect_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._scripts = {name: self._client.register_script(text) for name, text in SCRIPTS.items()}
        try:
            await self.ping()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        bridge, self._bridge = self._bridge, None
        if client is None or bridge is None or bridge.closed:
            return
        with trio.CancelScope(shield=True):
            try:
                await bridge.run(client.aclose())
            except Exception:  # closing a broken connection must not fail the shutdown
                pass

    async def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run one asyncio coroutine on the bridge; Redis failures become 503s."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        bridge = self._bridge
        if bridge is None or bridge.closed or self._client is None:
            raise BackendUnavailable(
                "The Redis backend is not connected.", details={"backend": "redis"}
            )
        result: T
        try:
            with trio.CancelScope(shield=True):
                result = await bridge.run(make())
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise BackendUnavailable(
                f"Redis at {_describe(self.url)} is unreachable: {error}",
                details={"backend": "redis", "error": type(error).__name__},
            ) from error
        return result

    async def script(self, name: str, *args: Any) -> Any:
        """Run the registered script ``name`` (``EVALSHA``) with ``ARGV`` = the prefix,
        then ``args``; its reply."""
        script = self._scripts[name]
        return await self.run(lambda: script(keys=[], args=[self.prefix, *args]))

    async def hget(self, key: str, field: str) -> str | None:
        client = self._client
        value: str | None = await self.run(lambda: client.hget(key, field))
        return value

    async def hgetall(self, key: str) -> dict[str, str]:
        client = self._client
        found: dict[str, str] = await self.run(lambda: client.hgetall(key))
        return found

    async def zrange_withscores(self, key: str, start: int, end: int) -> list[tuple[str, float]]:
        """Members of the sorted set ``key`` from rank ``start`` to ``end`` with their scores."""
        client = self._client
        found: list[tuple[str, float]] = await self.run(
            lambda: client.zrange(key, start, end, withscores=True)
        )
        return found

    async def ping(self) -> float:
        """Round-trip latency in milliseconds; raises if Redis is unreachable."""
        client = self._client
        started = time.perf_counter()
        await self.run(lambda: client.ping())
        return (time.perf_counter() - started) * 1000.0

    async def reset(self) -> None:
        """Delete every key under the prefix (all the parts' data)."""
        await self.script("reset")
