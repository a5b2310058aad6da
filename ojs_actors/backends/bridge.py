"""One asyncio event loop on trio, shared by every asyncio client of every backend.

Clients written for asyncio (redis-py's asyncio client, nats-py, aiokafka,
aiobotocore) run on one trio-asyncio loop, opened by :func:`open_asyncio_bridge`
as an async context manager: the loop lives inside the caller's nursery, never
as a trio system task, so it is closed when the block exits, after the
backends that use it (:func:`~ojs_actors.backends.open_backend` orders that).

A backend that needs the loop says so with ``needs_asyncio = True`` and takes
:func:`current_asyncio_bridge` in its ``start()``; it keeps that bridge and runs
each asyncio coroutine with :meth:`AsyncioBridge.run`, from whatever trio task
calls it. Opening a bridge where one is already open (this context's, or a
trio-asyncio loop the application opened itself) reuses it: one process, one loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")


class BridgeUnavailable(RuntimeError):
    """No asyncio bridge is open where one is needed, or it has closed."""


class AsyncioBridge:
    """An open trio-asyncio loop; :meth:`run` runs asyncio coroutines on it."""

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self.closed = False

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run one asyncio coroutine on the loop and return its result. Cancelling the
        calling trio task cancels the coroutine (callers shield what must not be lost)."""
        if self.closed:
            coroutine.close()  # never awaited: close it so asyncio does not warn
            raise BridgeUnavailable("The asyncio bridge is closed.")
        result: T = await self._loop.run_aio_coroutine(coroutine)
        return result


_current: ContextVar[AsyncioBridge | None] = ContextVar("ojs_asyncio_bridge", default=None)


def current_asyncio_bridge() -> AsyncioBridge:
    """The bridge open in this context; :class:`BridgeUnavailable` if there is none."""
    bridge = _current.get()
    if bridge is None or bridge.closed:
        raise BridgeUnavailable(
            "This backend runs asyncio clients and needs the asyncio bridge: open it with "
            "`async with open_backend(backend):` (or open_system, which does), not start()."
        )
    return bridge


@contextmanager
def bridge_in_context(bridge: AsyncioBridge) -> Iterator[None]:
    """Make ``bridge`` the current one for the duration of the block (e.g. a backend's
    ``start()`` in a task other than the one that opened the bridge)."""
    token = _current.set(bridge)
    try:
        yield
    finally:
        _current.reset(token)


@asynccontextmanager
async def open_asyncio_bridge() -> AsyncIterator[AsyncioBridge]:
    """Open the asyncio loop for the block, or reuse the one already open here."""
    shared = _current.get()
    if shared is not None and not shared.closed:
        yield shared
        return
    trio_asyncio = _import_trio_asyncio()
    outer_loop = trio_asyncio.current_loop.get()
    if outer_loop is not None and not outer_loop.is_closed():
        async with _bridge_over(outer_loop) as bridge:
            yield bridge
        return
    raised: list[BaseException] = []
    try:
        async with trio_asyncio.open_loop() as loop, _bridge_over(loop) as bridge:
            try:
                yield bridge
            except BaseException as error:
                raised.append(error)
                raise
    except BaseExceptionGroup as group:
        # The loop's own nurseries wrap what the block raised in groups: take it out
        # again, so a block behaves the same with or without the bridge around it.
        if raised and _same_errors(group, raised[0]):
            raise raised[0] from raised[0].__cause__
        raise


@asynccontextmanager
async def _bridge_over(loop: Any) -> AsyncIterator[AsyncioBridge]:
    bridge = AsyncioBridge(loop)
    try:
        with bridge_in_context(bridge):
            yield bridge
    finally:
        bridge.closed = True


def _same_errors(group: BaseExceptionGroup[BaseException], error: BaseException) -> bool:
    """Whether ``group`` holds exactly the exceptions of ``error``, however regrouped
    (trio-asyncio splits a group the block raised, so the group itself is a copy)."""
    return [id(leaf) for leaf in _leaves(group)] == [id(leaf) for leaf in _leaves(error)]


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for member in error.exceptions:
            yield from _leaves(member)
    else:
        yield error


def _import_trio_asyncio() -> Any:
    try:
        import trio_asyncio  # imported on use: it installs its own asyncio event loop policy
    except ModuleNotFoundError as missing:
        raise BridgeUnavailable(
            "The asyncio bridge needs trio-asyncio, which is not installed: install the "
            "extra of the backend, e.g. pip install 'ojs-actors[redis]'."
        ) from missing
    return trio_asyncio


__all__ = [
    "AsyncioBridge",
    "BridgeUnavailable",
    "bridge_in_context",
    "current_asyncio_bridge",
    "open_asyncio_bridge",
]
