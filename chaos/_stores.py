"""The backend store of a chaos run, started for real, with a :class:`FaultProxy` in front
of each of its servers: what ``ojs-actors serve`` and the embedded worker group are
told is the proxy's address, so every fault the proxy makes reaches both.

memory has no store (nothing to proxy) and sqlite a file (nothing to proxy either); redis,
nats and sqs (moto) one server each; kafka two: the broker, which must advertise the
proxy's port so clients come back through it, and the redis-server of its job state.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ojs_actors.backends.registry import REGISTRY
from ojs_actors.testing.services import (
    KafkaBroker,
    NatsServer,
    RedisServer,
    SerialMotoServer,
    Service,
)

from ._proxy import HOST, FaultProxy

BACKENDS = ("memory", "sqlite", "redis", "nats", "kafka", "sqs")
AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "chaos", "AWS_SECRET_ACCESS_KEY": "chaos"}


@dataclass
class Store:
    backend: str
    options: dict[str, Any]
    """``create_backend(backend, **options)``: through the proxies."""
    proxies: list[FaultProxy] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)

    @property
    def environment(self) -> dict[str, str]:
        """The environment of ``ojs-actors serve --backend <backend>`` on this store."""
        env = {
            option.env: str(self.options[option.name])
            for option in REGISTRY.entry(self.backend).options
            if option.name in self.options
        }
        return env | (AWS_CREDENTIALS if self.backend == "sqs" else {})

    @property
    def shared(self) -> bool:
        """Whether several processes can share it (all but memory)."""
        return self.backend != "memory"


class _AdvertisingKafkaBroker(KafkaBroker):
    """Tansu telling clients to connect to ``advertised_port`` (the proxy's)."""

    advertised_port = 0

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("--advertised-listener-url") + 1
        command[at] = f"tcp://{HOST}:{self.advertised_port}"
        return command


@asynccontextmanager
async def open_store(backend: str, directory: Path) -> AsyncIterator[Store]:
    """The store of ``backend`` (its services started, its proxies running) until the block
    ends; everything started here is stopped then."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
    with ExitStack() as stack:
        async with trio.open_nursery() as nursery:

            async def proxy(name: str, port: int) -> FaultProxy:
                fault_proxy = FaultProxy(name, port)
                await nursery.start(fault_proxy.run)
                store.proxies.append(fault_proxy)
                return fault_proxy

            def service(started: Service) -> Service:
                started.directory.mkdir(parents=True, exist_ok=True)
                stack.enter_context(started)  # started now, stopped when the run ends
                store.services.append(started)
                return started

            store = Store(backend, {"event_retention": 1_000_000})
            if backend == "sqlite":
                store.options["path"] = str(directory / "chaos.db")
            elif backend == "redis":
                redis = service(RedisServer(directory / "redis"))
                store.options["url"] = f"redis://{HOST}:{(await proxy('redis', redis.port)).port}"
            elif backend == "nats":
                nats = service(NatsServer(directory / "nats"))
                front = await proxy("nats", nats.port)
                store.options |= {
                    "url": f"nats://{HOST}:{front.port}",
                    "batch_max_messages": NatsServer.batch_max_msgs,
                }
            elif backend == "kafka":
                redis = service(RedisServer(directory / "redis"))
                broker = _AdvertisingKafkaBroker(directory / "kafka")
                broker_front = FaultProxy("kafka", broker.port)
                await nursery.start(broker_front.run)
                broker.advertised_port = broker_front.port
                service(broker)
                store.proxies.append(broker_front)
                redis_front = await proxy("redis", redis.port)
                store.options |= {
                    "brokers": f"{HOST}:{broker_front.port}",
                    "redis_url": f"redis://{HOST}:{redis_front.port}",
                    "partitions": 1,
                    "timeout": 3.0,
                }
            elif backend == "sqs":
                # the embedded group (this process) finds moto's dummy credentials where
                # the servers do: in the environment
                for name, value in AWS_CREDENTIALS.items():
                    os.environ.setdefault(name, value)
                moto = service(SerialMotoServer(directory / "moto"))
                front = await proxy("sqs", moto.port)
                store.options |= {
                    "endpoint_url": f"http://{HOST}:{front.port}",
                    "region": "us-east-1",
                    "table": "ojs-chaos",
                    "queue_prefix": "chaos",
                }
            try:
                yield store
            finally:
                nursery.cancel_scope.cancel()
