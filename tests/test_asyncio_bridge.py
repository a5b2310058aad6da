"""The asyncio bridge lives inside structured concurrency: opened by ``open_system`` (through
``open_backend``) for a backend that runs asyncio clients, shared by every such backend,
closed after them, and never a trio system task. The backends here run real asyncio
coroutines on it; the Redis backend, native to trio, opens none."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import trio
import trio_asyncio

from ojs_actors.backends import MemoryBackend, open_backend
from ojs_actors.backends.bridge import (
    AsyncioBridge,
    BridgeUnavailable,
    current_asyncio_bridge,
    open_asyncio_bridge,
)
from ojs_actors.backends.redis import RedisBackend
from ojs_actors.core import BackendUnavailable
from ojs_actors.system import open_system

LOOP_TASK = "_main_loop"  # trio-asyncio's task running the asyncio loop


def tasks_under(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            yield child
            yield from tasks_under(child)


def loop_tasks(under: trio.lowlevel.Task | None = None) -> list[trio.lowlevel.Task]:
    """The asyncio loops running under ``under`` (default: anywhere in this run)."""
    root = under or trio.lowlevel.current_root_task()
    return [task for task in tasks_under(root) if task.name.endswith(LOOP_TASK)]


def system_tasks() -> set[str]:
    """Tasks outside every nursery of the program: the root task's own children."""
    root = trio.lowlevel.current_root_task()
    return {task.name for nursery in root.child_nurseries for task in nursery.child_tasks}


class AsyncioClientBackend(MemoryBackend):
    """The memory backend plus a real asyncio coroutine on the bridge at start and close,
    as an asyncio client's connect and disconnect would run."""

    needs_asyncio = True

    def __init__(self, *, fail_to_start: bool = False) -> None:
        super().__init__()
        self.bridge: AsyncioBridge | None = None
        self.closed_on_open_bridge = False
        self.fail_to_start = fail_to_start

    async def start(self) -> None:
        self.bridge = current_asyncio_bridge()
        await self.bridge.run(asyncio.sleep(0))
        if self.fail_to_start:
            raise BackendUnavailable("the asyncio client could not connect")

    async def close(self) -> None:
        assert self.bridge is not None
        self.closed_on_open_bridge = not self.bridge.closed
        await self.bridge.run(asyncio.sleep(0))


async def test_open_system_runs_the_loop_inside_its_nursery_and_closes_it() -> None:
    before = system_tasks()
    async with open_system(AsyncioClientBackend()) as system:
        bridge = current_asyncio_bridge()
        assert not bridge.closed
        assert system_tasks() == before  # no system task of ours
        assert len(loop_tasks(under=trio.lowlevel.current_task())) == 1
        job = await system.enqueue({"type": "t", "args": [], "options": {"queue": "q"}})
        assert (await system.info(job.id)).id == job.id
    assert bridge.closed
    assert loop_tasks() == []
    assert system_tasks() == before
    with pytest.raises(BridgeUnavailable):
        current_asyncio_bridge()


async def test_every_asyncio_backend_shares_one_loop() -> None:
    async with (
        open_system(AsyncioClientBackend()) as first,
        open_system(AsyncioClientBackend()) as second,
    ):
        assert len(loop_tasks()) == 1
        await first.enqueue({"type": "t", "args": [], "options": {"queue": "q"}})
        assert await second.list_queues() == []
    assert loop_tasks() == []


async def test_an_application_loop_is_reused() -> None:
    async with trio_asyncio.open_loop():
        async with open_system(AsyncioClientBackend()) as system:
            assert len(loop_tasks()) == 1
            assert (await system.health())["status"] == "ok"
        assert len(loop_tasks()) == 1  # the application's loop outlives the system


async def test_a_bridge_opened_by_another_task_is_used_when_given() -> None:
    """A test fixture's case: the bridge is opened in one task, the backend in another."""
    release = trio.Event()

    async def hold_bridge(*, task_status: trio.TaskStatus[AsyncioBridge]) -> None:
        async with open_asyncio_bridge() as bridge:
            task_status.started(bridge)
            await release.wait()

    async with trio.open_nursery() as nursery:
        bridge = await nursery.start(hold_bridge)
        async with open_backend(AsyncioClientBackend(), bridge=bridge) as backend:
            assert await backend.ping() >= 0
            assert len(loop_tasks()) == 1
        assert not bridge.closed
        release.set()
    assert bridge.closed


async def test_the_backend_closes_before_its_bridge_even_when_cancelled() -> None:
    backend = AsyncioClientBackend()
    with trio.CancelScope() as scope:
        async with open_system(backend) as system:
            await system.enqueue({"type": "t", "args": []})
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert backend.closed_on_open_bridge
    assert backend.bridge is not None and backend.bridge.closed
    assert loop_tasks() == []


async def test_starting_without_a_bridge_says_how_to_open_one() -> None:
    with pytest.raises(BridgeUnavailable, match="open_backend"):
        await AsyncioClientBackend().start()


async def test_a_failed_start_raises_as_it_would_without_the_bridge() -> None:
    with pytest.raises(BackendUnavailable):
        async with open_system(AsyncioClientBackend(fail_to_start=True)):
            pass  # pragma: no cover
    assert loop_tasks() == []


async def test_the_redis_backend_needs_no_asyncio(redis_url: str) -> None:
    assert RedisBackend.needs_asyncio is False
    async with open_system(RedisBackend(redis_url)) as system:
        await system.enqueue({"type": "t", "args": [], "options": {"queue": "q"}})
        assert loop_tasks() == []
        with pytest.raises(BridgeUnavailable):
            current_asyncio_bridge()


def nesting(error: BaseException) -> list[str]:
    """The shape of an exception: the groups around it, then its type."""
    shape = []
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        shape.append(type(error).__name__)
        error = error.exceptions[0]
    return [*shape, type(error).__name__]


async def test_errors_of_the_block_come_out_as_without_the_bridge() -> None:
    shapes = []
    for backend in (MemoryBackend(), AsyncioClientBackend()):
        with pytest.raises(BaseException) as raised:
            async with open_system(backend):
                raise KeyError("from the block")
        shapes.append(nesting(raised.value))
    assert shapes[0] == shapes[1]
    assert shapes[0][-1] == "KeyError"
