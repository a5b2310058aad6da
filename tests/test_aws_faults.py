"""The AWS endpoint stops answering under a loaded server, then answers again.

A real ``ojs-actors serve --backend sqs`` on a moto server of this test alone (DynamoDB
and SQS) takes a steady, bounded stream of enqueues, fetches and acks from client
threads. moto is frozen for 10 s (SIGSTOP, then SIGCONT: its connections stay open and
its state in memory, but nothing answers, as an endpoint that hangs), the clients going
on all along. ``outage.py`` checks the rest, as on the other backends: while AWS does not
answer every request fails fast with a 503 ``backend_unavailable`` (each AWS call has a
deadline, ``--aws-timeout``: :data:`AWS_TIMEOUT_S` here) and health reports the backend
``unhealthy``; once it answers again the server recovers by itself; no job whose
enqueue got a 2xx is lost, no job whose ack got a 2xx is delivered again; nothing
crash-loops.

A request that timed out may still reach DynamoDB after the thaw (moto answers the
requests it held): a write answered 503 may be stored, which the assertions leave open.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from outage import Outage, check_outage
from serving import OjsServer, aws_env

from ojs_actors.testing.services import SerialMotoServer

AWS_TIMEOUT_S = 2.0
FAIL_FAST_S = AWS_TIMEOUT_S + 1.5
"""Longest a request may take while AWS does not answer: its call's deadline, and some."""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def moto() -> Iterator[SerialMotoServer]:
    """A moto server of this test alone (to freeze), in a temporary directory of its own."""
    with SerialMotoServer() as server:
        yield server


def test_aws_endpoint_frozen_under_load(moto: SerialMotoServer, tmp_path: Path) -> None:
    options = {
        "endpoint_url": moto.url,
        "region": "us-east-1",
        "table": "ojs-faults",
        "queue_prefix": "faults",
        "timeout": AWS_TIMEOUT_S,
    }
    server = OjsServer(
        ["--backend", "sqs"], tmp_path / "server.log", env=aws_env(options), poll_interval=0.2
    )
    check_outage(
        server,
        moto.frozen,
        Outage(
            backend="sqs",
            fail_fast_s=FAIL_FAST_S,
            acks_before=20,
            min_during=10,
            min_health_checks=3,
        ),
    )
