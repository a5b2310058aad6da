"""nats-server goes away under a loaded server and comes back (same port, same store).

A real ``ojs-actors serve --backend nats`` on a nats-server of this test alone (file
storage, the backend's default) takes a steady, bounded stream of enqueues, fetches and
acks from client threads. nats-server is stopped for 10 s and started again on the same
port and store directory, the clients going on all along. ``outage.py`` checks the rest,
as on the other backends: while NATS is away every request fails fast (within
:data:`FAIL_FAST_S`) with a 503 ``backend_unavailable`` and health reports the backend
``unhealthy``; once it is back the server recovers by itself; no job whose enqueue got
a 2xx is lost, no job whose ack got a 2xx is delivered again; nothing crash-loops.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import NatsServer
from outage import Outage, check_outage
from serving import OjsServer, nats_env

FAIL_FAST_S = 2.0
"""Longest a request may take while NATS is away (they take milliseconds)."""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test alone, JetStream on file storage in ``tmp_path``."""
    directory = tmp_path / "nats"
    directory.mkdir()
    with NatsServer(directory) as server:
        yield server


def test_nats_stop_and_restart_under_load(nats: NatsServer, tmp_path: Path) -> None:
    @contextmanager
    def stopped() -> Iterator[None]:
        nats.stop()
        try:
            yield
        finally:
            nats.start()

    server = OjsServer(
        ["--backend", "nats"], tmp_path / "server.log", env=nats_env(nats.url), poll_interval=0.2
    )
    check_outage(server, stopped, Outage(backend="nats", fail_fast_s=FAIL_FAST_S))
