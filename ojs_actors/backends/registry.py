"""Every backend by name: what it is, how to make it, its options and the extra it needs.

The CLI's ``--backend`` choices and per-backend flags, :func:`create_backend` and
:func:`open_backend` all read :data:`REGISTRY`. A backend in this package is one
:class:`BackendEntry` in :data:`BUILTIN`; a third-party package adds its own through
the ``ojs_actors.backends`` entry-point group, naming a :class:`BackendEntry`::

    [project.entry-points."ojs_actors.backends"]
    mybackend = "my_package.ojs:ENTRY"

The factory is named as ``"module:attribute"`` and imported only when a backend of
that kind is made, so a missing optional dependency costs nothing until then, and
then fails with :class:`MissingExtra` naming the ``pip install`` that brings it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import Any

import trio

from ..core import InvalidRequest
from . import redis, sqlite
from .aws.options import AWS_OPTIONS
from .base import Backend
from .bridge import AsyncioBridge, bridge_in_context, open_asyncio_bridge
from .options import BackendOption, parse_bool, positive_float, positive_int
from .outbox import EVENT_RETENTION

log = logging.getLogger("ojs_actors.backends")

ENTRY_POINT_GROUP = "ojs_actors.backends"


class MissingExtra(InvalidRequest):
    """A backend's optional dependencies are not installed."""


@dataclass(frozen=True, slots=True)
class BackendEntry:
    name: str
    description: str
    factory: str | Callable[..., Backend]
    """``"module:attribute"`` (imported on first use) or the callable itself."""
    options: tuple[BackendOption, ...] = ()
    extra: str | None = None
    """The ``ojs-actors`` extra that installs the dependencies, e.g. ``"redis"``."""
    requires: tuple[str, ...] = ()
    """Top-level modules the extra installs, checked before the factory is imported."""
    shared_between_processes: bool = True
    """Several server processes over it behave as one server (``serve --workers N``);
    ``False`` for a store that lives in one process's memory."""

    def create(self, **options: Any) -> Backend:
        self.check_installed()
        return self._load_factory()(**options)

    def check_installed(self) -> None:
        missing = [module for module in self.requires if importlib.util.find_spec(module) is None]
        if missing:
            raise self._missing_extra(missing)

    def options_from(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The factory's keyword arguments from parsed CLI values (by ``dest``)."""
        return {option.name: values[option.dest] for option in self.options}

    def _load_factory(self) -> Callable[..., Backend]:
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attribute = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if self.extra is None or error.name == module_name:
                raise
            raise self._missing_extra([error.name or "?"]) from error
        factory: Callable[..., Backend] = getattr(module, attribute)
        return factory

    def _missing_extra(self, modules: list[str]) -> MissingExtra:
        install = f"pip install 'ojs-actors[{self.extra}]'" if self.extra else "install them"
        return MissingExtra(
            f"The {self.name} backend needs {', '.join(modules)}, which is not installed: "
            f"{install}.",
            details={"backend": self.name, "missing": modules, "extra": self.extra},
        )


class BackendRegistry:
    """Backends by name, plus those found in an entry-point group on first use."""

    def __init__(
        self, entries: Iterable[BackendEntry] = (), *, entry_point_group: str | None = None
    ) -> None:
        self._entries: dict[str, BackendEntry] = {}
        self._group = entry_point_group
        for entry in entries:
            self.register(entry)

    def register(self, entry: BackendEntry) -> None:
        if entry.name in self._entries:
            raise ValueError(f"A backend named {entry.name!r} is registered already.")
        self._entries[entry.name] = entry

    def names(self) -> tuple[str, ...]:
        return tuple(self._all())

    def entries(self) -> tuple[BackendEntry, ...]:
        return tuple(self._all().values())

    def entry(self, name: str) -> BackendEntry:
        entries = self._all()
        if name not in entries:
            raise InvalidRequest(
                f"Unknown backend {name!r}; this build has: {', '.join(entries)}.",
                details={"backend": name, "available": list(entries)},
            )
        return entries[name]

    def create(self, name: str, **options: Any) -> Backend:
        return self.entry(name).create(**options)

    def add_arguments(
        self,
        parser: argparse.ArgumentParser,
        environ: Mapping[str, str] = os.environ,
        *,
        default: str = "memory",
    ) -> None:
        """``--backend`` and every backend's options (a flag shared by several backends once)."""
        choices = self.names()
        parser.add_argument(
            "--backend",
            default=environ.get("OJS_BACKEND", default),
            choices=choices,
            help="storage backend (env OJS_BACKEND; default "
            f"{default}): "
            + "; ".join(f"{entry.name}: {entry.description}" for entry in self.entries()),
        )
        added: dict[str, BackendOption] = {}
        for entry in self.entries():
            for option in entry.options:
                earlier = added.get(option.flag)
                if earlier is None:
                    added[option.flag] = option
                    option.add_to(parser, environ)
                elif not earlier.same_setting_as(option):
                    raise ValueError(
                        f"Backend {entry.name!r} declares {option.flag} differently from "
                        "another backend."
                    )

    def _all(self) -> dict[str, BackendEntry]:
        if self._group is not None:
            group, self._group = self._group, None
            self._discover(group)
        return self._entries

    def _discover(self, group: str) -> None:
        for point in entry_points(group=group):
            try:
                entry = point.load()
            except Exception:
                log.exception("could not load backend entry point %r", point.value)
                continue
            if not isinstance(entry, BackendEntry) or entry.name in self._entries:
                log.warning(
                    "ignoring backend entry point %r: not a BackendEntry, or its name is taken",
                    point.value,
                )
                continue
            self._entries[entry.name] = entry


REDIS_URL_OPTION = BackendOption(
    name="url",
    flag="--redis-url",
    env="REDIS_URL",
    default=redis.DEFAULT_URL,
    help="Redis of --backend redis: redis://[user:password@]host:port[/db]",
)
"""Also for backends that keep their state in Redis (``dataclasses.replace`` the name)."""

EVENT_RETENTION_OPTION = BackendOption(
    name="event_retention",
    flag="--event-retention",
    env="OJS_EVENT_RETENTION",
    default=EVENT_RETENTION,
    help="event outbox entries kept, newest first (a job change is one or two events)",
    type=positive_int,
)


def _kafka_option(name: str, env: str, default: Any, help: str, **more: Any) -> BackendOption:
    flag = "--kafka-" + name.replace("_", "-")
    return BackendOption(name=name, flag=flag, env=env, default=default, help=help, **more)


KAFKA = BackendEntry(
    name="kafka",
    description="Kafka for events and job records, with the job state in Redis",
    factory="ojs_actors.backends.kafka:KafkaBackend",
    options=(
        replace(REDIS_URL_OPTION, name="redis_url"),
        _kafka_option(
            "brokers", "KAFKA_BROKERS", "localhost:9092",
            "Kafka bootstrap servers of --backend kafka, comma-separated host:port",
        ),
        _kafka_option(
            "use_queue_key", "OJS_KAFKA_USE_QUEUE_KEY", False,
            "key job records by queue name instead of job type", type=bool,
        ),
        _kafka_option(
            "events_enabled", "OJS_KAFKA_EVENTS_ENABLED", True,
            "publish lifecycle events to the events topic", type=bool,
        ),
        _kafka_option(
            "partitions", "OJS_KAFKA_PARTITIONS", 3,
            "partitions of each topic created", type=positive_int,
        ),
        _kafka_option(
            "replication_factor", "OJS_KAFKA_REPLICATION_FACTOR", 1,
            "replicas of each topic created", type=positive_int,
        ),
        _kafka_option(
            "events_topic", "OJS_KAFKA_EVENTS_TOPIC", "ojs.events", "topic of lifecycle events"
        ),
        _kafka_option(
            "queue_prefix", "OJS_KAFKA_QUEUE_PREFIX", "ojs.queue.",
            "prefix of each queue's job topic (and its .retry topic)",
        ),
        _kafka_option(
            "dead_prefix", "OJS_KAFKA_DEAD_PREFIX", "ojs.dead.",
            "prefix of each queue's dead letter topic",
        ),
        _kafka_option(
            "outbox_limit", "OJS_KAFKA_OUTBOX_LIMIT", 100_000,
            "events waiting for Kafka at which new jobs are refused with 503", type=positive_int,
        ),
        _kafka_option(
            "timeout", "OJS_KAFKA_TIMEOUT", 10.0,
            "seconds a Kafka request may take", type=positive_float,
        ),
        _kafka_option(
            "security_protocol", "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
            "how to reach the brokers",
            choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        ),
        _kafka_option(
            "sasl_mechanism", "KAFKA_SASL_MECHANISM", "PLAIN", "SASL mechanism (SASL_*)",
            choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
        ),
        _kafka_option("sasl_username", "KAFKA_SASL_USERNAME", None, "SASL user name"),
        _kafka_option("sasl_password", "KAFKA_SASL_PASSWORD", None, "SASL password"),
        _kafka_option(
            "tls_ca", "KAFKA_TLS_CA", None, "CA file to verify the brokers with (SSL, SASL_SSL)"
        ),
        EVENT_RETENTION_OPTION,
    ),
    extra="kafka",
    requires=("aiokafka", "hiredis", "trio_asyncio"),
)  # fmt: skip

BUILTIN: tuple[BackendEntry, ...] = (
    BackendEntry(
        name="memory",
        description="in this process, gone when it stops",
        factory="ojs_actors.backends.memory:MemoryBackend",
        options=(EVENT_RETENTION_OPTION,),
        shared_between_processes=False,
    ),
    BackendEntry(
        name="sqlite",
        description="one SQLite file, survives restarts and SIGKILL",
        factory="ojs_actors.backends.sqlite:SqliteBackend",
        options=(
            BackendOption(
                name="path",
                flag="--db",
                env="OJS_DB",
                default=sqlite.DEFAULT_PATH,
                help="SQLite database file of --backend sqlite, created if missing",
            ),
            BackendOption(
                name="synchronous",
                flag="--db-sync",
                env="OJS_DB_SYNC",
                default="full",
                choices=sqlite.SYNCHRONOUS,
                help="SQLite sync on commit: full survives power loss, normal only process death",
            ),
            EVENT_RETENTION_OPTION,
        ),
    ),
    BackendEntry(
        name="redis",
        description="one Redis server shared by any number of processes",
        factory="ojs_actors.backends.redis:RedisBackend",
        options=(REDIS_URL_OPTION, EVENT_RETENTION_OPTION),
        extra="redis",
        requires=("hiredis",),
    ),
    BackendEntry(
        name="nats",
        description="NATS JetStream (nats-server >= 2.12) shared by any number of processes",
        factory="ojs_actors.backends.nats:NatsBackend",
        options=(
            BackendOption(
                name="url",
                flag="--nats-url",
                env="NATS_URL",
                default="nats://localhost:4222",
                help="NATS of --backend nats: nats://[user:password@|token@]host:port or "
                "tls://…; several, comma-separated, are tried in order",
            ),
            BackendOption(
                name="stream",
                flag="--nats-stream",
                env="OJS_NATS_STREAM",
                default="OJS",
                help="JetStream stream holding jobs and indexes (events go to <stream>_EVENTS)",
            ),
            BackendOption(
                name="prefix",
                flag="--nats-prefix",
                env="OJS_NATS_PREFIX",
                default="ojs",
                help="first token of every subject the nats backend uses",
            ),
            BackendOption(
                name="storage",
                flag="--nats-storage",
                env="OJS_NATS_STORAGE",
                default="file",
                choices=("file", "memory"),
                help="JetStream storage of the streams the nats backend creates",
            ),
            BackendOption(
                name="replicas",
                flag="--nats-replicas",
                env="OJS_NATS_REPLICAS",
                default=1,
                type=positive_int,
                help="replicas of the streams the nats backend creates (a NATS cluster)",
            ),
            BackendOption(
                name="batch_max_messages",
                flag="--nats-batch-max",
                env="OJS_NATS_BATCH_MAX",
                default=1000,
                type=positive_int,
                help="the server's jetstream.limits.batch.max_msgs (an atomic write's limit)",
            ),
            BackendOption(
                name="creds",
                flag="--nats-creds",
                env="NATS_CREDS",
                default=None,
                help="NATS .creds file (JWT and nkey seed; needs pip install nkeys)",
            ),
            BackendOption(
                name="tls_ca",
                flag="--nats-tls-ca",
                env="NATS_TLS_CA",
                default=None,
                help="CA file to verify a tls:// NATS server with (default: the system's)",
            ),
            EVENT_RETENTION_OPTION,
        ),
        extra="nats",
    ),
    KAFKA,
    BackendEntry(
        name="sqs",
        description="AWS: the job state in DynamoDB, hints on SQS",
        factory="ojs_actors.backends.aws.backend:AwsBackend",
        options=(*AWS_OPTIONS, EVENT_RETENTION_OPTION),
        extra="aws",
        requires=("aiobotocore", "httpx2"),
    ),
)


REGISTRY = BackendRegistry(BUILTIN, entry_point_group=ENTRY_POINT_GROUP)
"""The registry the CLI, :func:`create_backend` and :func:`open_backend` use."""


def create_backend(name: str, **options: Any) -> Backend:
    """A backend by its ``--backend`` name; options are its factory's keywords."""
    return REGISTRY.create(name, **options)


@asynccontextmanager
async def open_backend(
    backend: Backend | str, /, *, bridge: AsyncioBridge | None = None, **options: Any
) -> AsyncIterator[Backend]:
    """Start ``backend`` (a registered name, made with ``options``, or a backend object)
    for the block; close it on exit, shielded from cancellation.

    A backend that ``needs_asyncio`` starts on ``bridge`` if given (a bridge opened by
    another task, e.g. a test fixture's), else on the bridge open here, else on one
    opened for the block and closed after the backend."""
    if isinstance(backend, str):
        store = create_backend(backend, **options)
    elif options:
        raise TypeError("options are for a backend given by name, not a backend object")
    else:
        store = backend
    async with AsyncExitStack() as stack:
        if store.needs_asyncio:
            if bridge is None:
                bridge = await stack.enter_async_context(open_asyncio_bridge())
            with bridge_in_context(bridge):
                await store.start()
        else:
            await store.start()
        try:
            yield store
        finally:
            with trio.CancelScope(shield=True):
                await store.close()


__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "REDIS_URL_OPTION",
    "REGISTRY",
    "BackendEntry",
    "BackendOption",
    "BackendRegistry",
    "MissingExtra",
    "create_backend",
    "open_backend",
    "parse_bool",
]
