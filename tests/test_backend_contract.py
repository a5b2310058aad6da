"""The backend contract (:mod:`ojs_actors.testing.contract`) on every in-tree backend."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from ojs_actors.backends import open_backend
from ojs_actors.backends.bridge import open_asyncio_bridge
from ojs_actors.testing.contract import BackendContract, BackendFactory


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def backend_factory(self) -> BackendFactory:
        return partial(open_backend, "memory")


class TestSqliteBackend(BackendContract):
    @pytest.fixture
    def backend_factory(self, tmp_path: Path) -> BackendFactory:
        files = (tmp_path / f"contract-{n}.db" for n in itertools.count())
        return lambda **options: open_backend("sqlite", path=next(files), **options)


class TestRedisBackend(BackendContract):
    @pytest.fixture
    async def backend_factory(self, redis_url: str) -> AsyncIterator[BackendFactory]:
        # The asyncio bridge lives in this fixture's task; backends opened in other tasks use it.
        async with open_asyncio_bridge() as bridge:
            yield partial(open_backend, "redis", bridge=bridge, url=redis_url)


class TestNatsBackend(BackendContract):
    @pytest.fixture
    def backend_factory(self, nats_options: dict[str, Any]) -> BackendFactory:
        base = dict(nats_options)
        tests = itertools.count()

        def factory(**options: Any) -> Any:
            n = next(tests)  # each backend of a test its own stream
            own = {**base, "stream": f"{base['stream']}_{n}", "prefix": f"{base['prefix']}_{n}"}
            return open_backend("nats", **own, **options)

        return factory


class TestKafkaBackend(BackendContract):
    @pytest.fixture
    async def backend_factory(self, kafka_options: dict[str, Any]) -> AsyncIterator[BackendFactory]:
        async with open_asyncio_bridge() as bridge:
            yield partial(open_backend, "kafka", bridge=bridge, **kafka_options)
