"""The backend registry: the CLI's backends and their options, configuration from the
environment, third-party backends by entry point, clear errors for unknown backends and
missing extras; and the manifest's capabilities, which each backend declares."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ojs_actors.backends import (
    EVERY_CAPABILITY,
    EVERY_EXTENSION,
    EXPERIMENTAL_EXTENSIONS,
    REGISTRY,
    Backend,
    MemoryBackend,
    MissingExtra,
    create_backend,
    open_backend,
)
from ojs_actors.backends.registry import (
    BUILTIN,
    REDIS_URL_OPTION,
    BackendEntry,
    BackendRegistry,
)
from ojs_actors.cli import build_parser
from ojs_actors.core import InvalidRequest
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import open_system

REPO = Path(__file__).resolve().parent.parent


def serve_parser(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ``serve`` subcommand's parser, built with exactly ``environ`` set."""
    for name in [option.env for entry in BUILTIN for option in entry.options] + ["OJS_BACKEND"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return build_parser()


# -- the CLI ---------------------------------------------------------------------------------------


def test_the_cli_offers_the_registered_backends_with_their_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = serve_parser({}, monkeypatch)
    serve = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    ).choices["serve"]
    flags = {flag: action for action in serve._actions for flag in action.option_strings}
    assert (
        flags["--backend"].choices
        == REGISTRY.names()
        == ("memory", "sqlite", "redis", "nats", "kafka", "sqs")
    )
    declared = {option.flag for entry in REGISTRY.entries() for option in entry.options}
    nats = {"--nats-url", "--nats-stream", "--nats-prefix", "--nats-storage", "--nats-replicas",
            "--nats-batch-max", "--nats-creds", "--nats-tls-ca"}  # fmt: skip
    kafka = {f"--kafka-{name}" for name in (
        "brokers", "use-queue-key", "events-enabled", "partitions", "replication-factor",
        "events-topic", "queue-prefix", "dead-prefix", "outbox-limit", "timeout",
        "security-protocol", "sasl-mechanism", "sasl-username", "sasl-password", "tls-ca",
    )}  # fmt: skip
    aws = {"--aws-region", "--aws-endpoint-url", "--dynamodb-table", "--sqs-queue-prefix",
           "--sqs-use-fifo", "--aws-timeout"}  # fmt: skip
    assert declared == {
        "--db", "--db-sync", "--redis-url", "--event-retention", *nats, *kafka, *aws
    }  # fmt: skip
    assert declared <= flags.keys()
    for entry in REGISTRY.entries():
        assert entry.description in flags["--backend"].help
        for option in entry.options:
            assert f"env {option.env}" in flags[option.flag].help


@pytest.mark.parametrize(
    ("argv", "environ", "options"),
    [
        (["--backend", "memory"], {}, {"event_retention": 10_000}),
        (["--backend", "memory", "--event-retention", "50"], {}, {"event_retention": 50}),
        (
            ["--backend", "sqlite"],
            {},
            {"path": "ojs.db", "synchronous": "full", "event_retention": 10_000},
        ),
        (
            ["--backend", "sqlite", "--db", "a.db"],
            {"OJS_DB": "b.db", "OJS_DB_SYNC": "normal", "OJS_EVENT_RETENTION": "7"},
            {"path": "a.db", "synchronous": "normal", "event_retention": 7},
        ),
        (
            ["--backend", "redis"],
            {},
            {"url": "redis://localhost:6379", "event_retention": 10_000},
        ),
        (
            [],
            {"OJS_BACKEND": "redis", "REDIS_URL": "redis://r:1/2"},
            {"url": "redis://r:1/2", "event_retention": 10_000},
        ),
        (
            ["--backend", "redis", "--redis-url", "redis://cli:3"],
            {"REDIS_URL": "redis://env:4"},
            {"url": "redis://cli:3", "event_retention": 10_000},
        ),
    ],
)
def test_backend_options_come_from_flags_then_the_environment_then_defaults(
    argv: list[str],
    environ: dict[str, str],
    options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = serve_parser(environ, monkeypatch).parse_args(["serve", *argv])
    assert REGISTRY.entry(args.backend).options_from(vars(args)) == options


def test_the_cli_refuses_an_unknown_backend(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        serve_parser({}, monkeypatch).parse_args(["serve", "--backend", "nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


# -- declaring backends --------------------------------------------------------------------


def test_the_backends_declare_their_seed_servers_variables_in_one_place() -> None:
    registry = REGISTRY
    environ = {
        "NATS_URL": "nats://n:1",
        "KAFKA_BROKERS": "k1:9092,k2:9092",
        "OJS_KAFKA_USE_QUEUE_KEY": "true",
        "OJS_KAFKA_EVENTS_ENABLED": "0",
        "REDIS_URL": "redis://state:6379",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "DYNAMODB_TABLE": "jobs",
        "SQS_QUEUE_PREFIX": "test-",
        "SQS_USE_FIFO": "yes",
    }
    parser = argparse.ArgumentParser()
    registry.add_arguments(parser, environ)
    options = {
        name: registry.entry(name).options_from(vars(parser.parse_args(["--backend", name])))
        for name in ("nats", "kafka", "sqs", "redis")
    }
    assert options == {
        "nats": {
            "url": "nats://n:1",
            "stream": "OJS",
            "prefix": "ojs",
            "storage": "file",
            "replicas": 1,
            "batch_max_messages": 1000,
            "creds": None,
            "tls_ca": None,
            "event_retention": 10_000,
        },
        "kafka": {
            "brokers": "k1:9092,k2:9092",
            "use_queue_key": True,
            "events_enabled": False,
            "redis_url": "redis://state:6379",
            "partitions": 3,
            "replication_factor": 1,
            "events_topic": "ojs.events",
            "queue_prefix": "ojs.queue.",
            "dead_prefix": "ojs.dead.",
            "outbox_limit": 100_000,
            "timeout": 10.0,
            "security_protocol": "PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": None,
            "sasl_password": None,
            "tls_ca": None,
            "event_retention": 10_000,
        },
        "sqs": {
            "region": "eu-west-1",
            "endpoint_url": "http://127.0.0.1:5000",
            "table": "jobs",
            "queue_prefix": "test-",
            "fifo": True,
            "timeout": 5.0,
            "event_retention": 10_000,
        },
        "redis": {"url": "redis://state:6379", "event_retention": 10_000},  # one --redis-url
    }
    overridden = parser.parse_args(["--backend", "sqs", "--no-sqs-use-fifo"])
    assert registry.entry("sqs").options_from(vars(overridden))["fifo"] is False


def test_a_flag_two_backends_declare_differently_is_refused() -> None:
    clash = dataclasses.replace(REDIS_URL_OPTION, name="redis_url", env="KAFKA_REDIS_URL")
    registry = BackendRegistry(
        [*BUILTIN, BackendEntry("other", "Other", MemoryBackend, options=(clash,))]
    )
    with pytest.raises(ValueError, match="--redis-url"):
        registry.add_arguments(argparse.ArgumentParser(), {})


def test_a_malformed_flag_in_the_environment_names_the_variable() -> None:
    registry = REGISTRY
    with pytest.raises(ValueError, match="SQS_USE_FIFO: expected true or false, not 'maybe'"):
        registry.add_arguments(argparse.ArgumentParser(), {"SQS_USE_FIFO": "maybe"})


def test_an_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequest) as raised:
        create_backend("postgres")
    assert raised.value.message == (
        "Unknown backend 'postgres'; this build has: memory, sqlite, redis, nats, kafka, sqs."
    )
    assert raised.value.details == {"backend": "postgres", "available": list(REGISTRY.names())}


def test_a_missing_dependency_names_the_extra_that_installs_it() -> None:
    registry = BackendRegistry(
        [
            BackendEntry(
                name="nats",
                description="NATS",
                factory="ojs_actors.backends.memory:MemoryBackend",
                extra="nats",
                requires=("ojs_test_no_such_module",),
            )
        ]
    )
    with pytest.raises(MissingExtra) as raised:
        registry.create("nats")
    assert raised.value.message == (
        "The nats backend needs ojs_test_no_such_module, which is not installed: "
        "pip install 'ojs-actors[nats]'."
    )


def test_a_factory_module_failing_on_a_missing_dependency_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ojs_test_kafka_backend.py").write_text("import ojs_test_missing_client\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = BackendEntry("kafka", "Kafka", "ojs_test_kafka_backend:KafkaBackend", extra="kafka")
    with pytest.raises(MissingExtra, match=r"ojs_test_missing_client.*ojs-actors\[kafka\]"):
        entry.create()


def write_distribution(root: Path, module: str, body: str, group: str) -> None:
    """An installed distribution (as pip leaves it) naming ``module:ENTRY`` in ``group``."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\nthird = {module}:ENTRY\n")


async def test_third_party_backends_are_found_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_distribution(
        tmp_path,
        "ojs_test_third_party",
        """
        from ojs_actors.backends import MemoryBackend
        from ojs_actors.backends.registry import BackendEntry, BackendOption

        class ThirdBackend(MemoryBackend):
            name = "third"

        ENTRY = BackendEntry(
            name="third",
            description="a backend of another package",
            factory=ThirdBackend,
            options=(BackendOption("event_retention", "--third-log", "THIRD_LOG", 10, "log", type=int),),
        )
        """,
        group="ojs_test_backends",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = BackendRegistry(BUILTIN, entry_point_group="ojs_test_backends")
    assert registry.names() == ("memory", "sqlite", "redis", "nats", "kafka", "sqs", "third")
    parser = argparse.ArgumentParser()
    registry.add_arguments(parser, {"THIRD_LOG": "7"})
    args = parser.parse_args(["--backend", "third"])
    options = registry.entry("third").options_from(vars(args))
    assert options == {"event_retention": 7}
    async with open_system(registry.create("third", **options)) as system:
        assert (await system.health())["backend"]["type"] == "third"


def test_the_cli_reports_a_missing_extra_and_exits_2(tmp_path: Path) -> None:
    write_distribution(
        tmp_path,
        "ojs_test_needs_extra",
        """
        from ojs_actors.backends.registry import BackendEntry

        ENTRY = BackendEntry(
            name="third",
            description="needs a client library that is not installed",
            factory="ojs_actors.backends.memory:MemoryBackend",
            extra="third",
            requires=("ojs_test_third_client",),
        )
        """,
        group="ojs_actors.backends",
    )
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "ojs_actors.cli", "serve", "--backend", "third", "--port", "0"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "ojs-actors: The third backend needs ojs_test_third_client, which is not installed: "
        "pip install 'ojs-actors[third]'."
    )


async def test_open_backend_takes_options_only_with_a_name() -> None:
    with pytest.raises(TypeError):
        async with open_backend(MemoryBackend(), event_retention=5):
            pass


# -- capabilities in the manifest ---------------------------------------------------------------

MANIFEST_CAPABILITIES = {
    "batch_enqueue": True,
    "cron_jobs": True,
    "dead_letter": True,
    "delayed_jobs": True,
    "job_ttl": True,
    "priority_queues": True,
    "rate_limiting": True,
    "schema_validation": True,
    "unique_jobs": True,
    "workflows": True,
    "pause_resume": True,
    "events": True,
}
"""What the manifest said before backends declared it: memory, sqlite and redis keep it."""


async def manifest(backend: Backend) -> dict[str, Any]:
    async with open_system(backend) as system:
        client = create_app(system, HttpSettings()).test_client()
        response = await client.get("/ojs/manifest")
        assert response.status_code == 200
        body: dict[str, Any] = await response.get_json()
    assert body["backend"] == backend.name
    return body


async def manifest_capabilities(backend: Backend) -> dict[str, Any]:
    capabilities: dict[str, Any] = (await manifest(backend))["capabilities"]
    return capabilities


@pytest.mark.parametrize("name", ["memory", "sqlite", "redis"])
async def test_the_manifest_reports_the_backends_capabilities(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    options: dict[str, Any] = {}
    if name == "sqlite":
        options["path"] = tmp_path / "ojs.db"
    if name == "redis":
        options["url"] = request.getfixturevalue("redis_url")
    backend = create_backend(name, **options)
    assert backend.capabilities == EVERY_CAPABILITY
    capabilities = await manifest_capabilities(backend)
    assert capabilities == MANIFEST_CAPABILITIES
    assert list(capabilities) == list(MANIFEST_CAPABILITIES)


async def test_the_manifest_says_what_a_backend_lacks() -> None:
    class NoWorkflows(MemoryBackend):
        capabilities = dataclasses.replace(EVERY_CAPABILITY, workflows=False, exact_counts=False)

    capabilities = await manifest_capabilities(NoWorkflows())
    assert capabilities == {**MANIFEST_CAPABILITIES, "workflows": False}


async def test_the_manifest_lists_exactly_the_extensions_the_backend_declares() -> None:
    listed = (await manifest(MemoryBackend()))["extensions"]
    everything = listed["official"]
    official = EVERY_EXTENSION - EXPERIMENTAL_EXTENSIONS.keys()
    assert [entry["name"] for entry in everything] == sorted(official)
    assert listed["experimental"] == [
        {
            "name": "job-versioning",
            "uri": "urn:ojs:ext:experimental:job-versioning",
            "version": "0.1.0",
        }
    ]
    assert everything[0] == {
        "name": everything[0]["name"],
        "uri": f"urn:ojs:ext:{everything[0]['name']}",
        "version": "1.0.0",
    }

    class NoAdminApi(MemoryBackend):
        capabilities = dataclasses.replace(
            EVERY_CAPABILITY, extensions=EVERY_EXTENSION - {"admin-api"}
        )

    fewer = (await manifest(NoAdminApi()))["extensions"]["official"]
    assert [entry["name"] for entry in fewer] == sorted(official - {"admin-api"})
