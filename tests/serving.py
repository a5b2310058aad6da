"""Real ``python -m ojs_actors serve`` processes for the tests that need one, and the app
on a real Hypercorn listener in the test's own trio run (:func:`listening`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import ASGIFramework

from ojs_actors.testing.services import free_port

REPO = Path(__file__).resolve().parent.parent

HTTP_PATHS: dict[str, tuple[str, ...]] = {"direct": (), "quart": ("--no-direct-routes",)}
"""``serve`` arguments of the two HTTP paths: the hot routes served directly (the default),
or Quart serving every route."""


@asynccontextmanager
async def listening(app: ASGIFramework) -> AsyncIterator[int]:
    """``app`` on a real Hypercorn listener on loopback until the block ends; yields its
    port."""
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            lambda task_status: hypercorn_serve(
                app, config, shutdown_trigger=shutdown.wait, task_status=task_status
            )
        )
        try:
            yield int(binds[0].rsplit(":", 1)[1])
        finally:
            shutdown.set()


NATS_BATCH_MAX = "10000"
"""``OJS_NATS_BATCH_MAX`` of the servers the tests start: the test nats-servers' batch limit
(``NatsServer.batch_max_msgs``)."""


def nats_env(url: str, options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The environment of ``serve --backend nats`` on ``url``; with ``options`` (the
    ``nats_options`` fixture), on the stream, prefix and storage of that test alone."""
    env = {"NATS_URL": url, "OJS_NATS_BATCH_MAX": NATS_BATCH_MAX}
    if options is not None:
        env |= {
            "OJS_NATS_STREAM": str(options["stream"]),
            "OJS_NATS_PREFIX": str(options["prefix"]),
            "OJS_NATS_STORAGE": str(options["storage"]),
        }
    return env


def kafka_env(options: Mapping[str, Any]) -> dict[str, str]:
    """The environment of ``serve --backend kafka`` with the ``kafka_options`` fixture's
    broker, Redis and topics."""
    return {
        "KAFKA_BROKERS": str(options["brokers"]),
        "REDIS_URL": str(options["redis_url"]),
        "OJS_KAFKA_EVENTS_TOPIC": str(options["events_topic"]),
        "OJS_KAFKA_QUEUE_PREFIX": str(options["queue_prefix"]),
        "OJS_KAFKA_DEAD_PREFIX": str(options["dead_prefix"]),
        "OJS_KAFKA_PARTITIONS": str(options["partitions"]),
        "OJS_KAFKA_TIMEOUT": str(options["timeout"]),
    }


def aws_env(options: Mapping[str, Any]) -> dict[str, str]:
    """The environment of ``serve --backend sqs`` with the ``aws_options`` fixture's
    endpoint, region, table and queue prefix, and the dummy credentials moto takes (the
    standard chain finds them in the environment)."""
    env = {
        "AWS_ENDPOINT_URL": str(options["endpoint_url"]),
        "AWS_REGION": str(options["region"]),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DYNAMODB_TABLE": str(options["table"]),
        "SQS_QUEUE_PREFIX": str(options["queue_prefix"]),
    }
    if "timeout" in options:
        env["OJS_AWS_TIMEOUT"] = str(options["timeout"])
    return env


WEBHOOKS_ON_LOOPBACK = {"OJS_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
"""Test servers send webhooks to loopback receivers only (a fuzzed subscription elsewhere
is refused, never delivered to)."""


class OjsServer:
    """``ojs-actors serve`` on a free loopback port, healthy when the constructor returns."""

    def __init__(
        self,
        backend_args: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        poll_interval: float | None = None,
        allow_reset: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = log.open("ab")
        command = [sys.executable, "-m", "ojs_actors", "serve", *backend_args,
                   "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        if poll_interval is not None:
            command += ["--poll-interval", str(poll_interval)]
        if allow_reset:
            command.append("--allow-reset")
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **WEBHOOKS_ON_LOOPBACK, **(env or {})},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.close()
                raise RuntimeError(f"server exited early: {log.read_text(errors='replace')}")
            try:
                if httpx.get(f"{self.url}/ojs/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"server not healthy in {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        if not self._log.closed:
            self._log.close()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop within 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()
