"""Shared fixtures: an in-memory ``System`` and HTTP test clients of it on both serving
paths, a real ``redis-server``, ``nats-server`` and Kafka broker for those backends' tests, and
a real ``ojs-actors serve`` on the memory backend.

The Redis fixtures start their own server (``ojs_actors.testing.services``): on a free
loopback port with a temporary directory, never a system service; the binary is found on
``PATH`` or installed by the ``test`` extra. A service whose binary is missing fails the
tests that need it with a message saying how to install it, instead of skipping them.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from serving import HTTP_PATHS, OjsServer
from trio.testing import MockClock

from ojs_actors.backends import create_backend
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import System, open_system
from ojs_actors.testing.services import (
    KafkaBroker,
    MissingBinary,
    MotoServer,
    NatsServer,
    RedisServer,
    SerialMotoServer,
)

__all__ = [
    "KafkaBroker",
    "MotoServer",
    "NatsServer",
    "RedisServer",
    "SerialMotoServer",
]  # for the tests that start a server of their own


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test whose service is not installed fails with the install hint alone."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(MissingBinary):
        report.longrepr = str(call.excinfo.value)
    return report


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server


_nats_names = itertools.count()


@pytest.fixture
def nats_options(nats_server: NatsServer) -> dict[str, Any]:
    """Options of a NATS backend on the session's nats-server with streams and subjects of
    this test alone (the streams of earlier tests stay, unused)."""
    if nats_server.process is None:
        nats_server.start()
    n = next(_nats_names)
    return {"url": nats_server.url, "stream": f"T{n}", "prefix": f"t{n}", "storage": "memory"}


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    with KafkaBroker() as broker:
        yield broker


_kafka_names = itertools.count()


def kafka_topics(brokers: str) -> dict[str, Any]:
    """Options of a kafka backend on ``brokers`` with topics of its own (the broker's
    topics of earlier tests stay, unused), one partition each (records in one order)."""
    n = next(_kafka_names)
    return {
        "brokers": brokers,
        "events_topic": f"t{n}.events",
        "queue_prefix": f"t{n}.queue.",
        "dead_prefix": f"t{n}.dead.",
        "partitions": 1,
        "timeout": 3.0,
    }


@pytest.fixture
def kafka_options(kafka_broker: KafkaBroker, redis_url: str) -> dict[str, Any]:
    """Options of a kafka backend on the session's broker and Redis (emptied for this
    test), with topics of this test alone."""
    if kafka_broker.process is None:
        kafka_broker.start()
    return {**kafka_topics(kafka_broker.url), "redis_url": redis_url}


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this test alone (to stop and restart; appendonly, fsync always)."""
    with RedisServer(tmp_path_factory.mktemp("own-redis")) as server:
        yield server


@pytest.fixture(scope="module", params=list(HTTP_PATHS))
def memory_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OjsServer]:
    """``ojs-actors serve --backend memory`` of a test module, once per HTTP path: the hot
    routes served directly (``direct``), and Quart serving every route (``quart``)."""
    log = tmp_path_factory.mktemp(f"server-{request.param}") / "server.log"
    server = OjsServer(["--backend", "memory", *HTTP_PATHS[request.param]], log)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def each_system(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[System]:
    """An embedded system on the memory, SQLite and Redis backends in turn (the session's
    Redis, emptied for the test)."""
    if request.param == "redis":
        backend = create_backend("redis", url=request.getfixturevalue("redis_url"))
    elif request.param == "sqlite":
        backend = create_backend("sqlite", path=str(tmp_path / "ojs.db"))
    else:
        backend = create_backend("memory")
    async with open_system(backend) as system:
        yield system


@pytest.fixture
def each_clock(request: pytest.FixtureRequest) -> MockClock:
    """trio's autojump clock for a test over ``each_system``: SQLite answers from a thread
    and Redis over a socket, idle for a moment in real time while they work, and jumping
    then would run the clock ahead of them."""
    kind = request.node.callspec.params.get("each_system", "memory")
    return MockClock(autojump_threshold=0 if kind == "memory" else 0.02)


@pytest.fixture
async def system() -> AsyncIterator[System]:
    """An embedded system on the memory backend."""
    async with open_system() as opened:
        yield opened


@pytest.fixture(params=[True, False], ids=["direct", "quart"])
def make_client(system: System, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Clients of the app as served (hot endpoints on the direct path), and of the app with
    Quart serving everything: both must answer alike."""

    def make(**settings: Any) -> Any:
        settings.setdefault("direct_routes", request.param)
        return create_app(system, HttpSettings(**settings)).test_client()

    return make


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Any:
    """A test client of the app over ``system``, once per HTTP path."""
    return make_client()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's server, its DynamoDB requests one at a time as DynamoDB isolates them
    (``ojs_actors.testing.moto``: stock moto loses writes under concurrent transactions)."""
    with SerialMotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


_aws_names = itertools.count()


@pytest.fixture
def aws_options(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Options of an AWS backend (the names of ``AWS_OPTIONS``) on the session's moto
    server, with a table and SQS queues of this test alone (those of earlier tests stay,
    unused; no reset, which would empty the tables of module-scoped fixtures too). The
    dummy credentials are in the environment, where the standard chain finds them; moto
    takes any."""
    if moto_server.process is None:
        moto_server.start()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    n = next(_aws_names)
    return {
        "endpoint_url": moto_server.url,
        "region": "us-east-1",
        "table": f"ojs-t{n}",
        "queue_prefix": f"t{n}",
    }
