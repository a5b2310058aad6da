"""Redis goes away under a running server and comes back (same port, appendonly data).

While it is gone, requests fail fast with a 503 OJS error and health says so; once
it is back the server recovers by itself, and every job whose enqueue got a 2xx is
still there and can be fetched. No actor crash-loops over the outage (the
scheduler and the queue actors answer 503 and look again; nothing escalates).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from conftest import RedisServer
from test_replicas import enqueue, fetch, start_server

OUTAGE_SECONDS = 6.0


def test_redis_stop_and_restart(own_redis: RedisServer, tmp_path: Path) -> None:
    server = start_server("redis", {"REDIS_URL": own_redis.url}, tmp_path / "server.log")
    try:
        acknowledged = {enqueue(server.url, "f", n) for n in range(20)}
        own_redis.stop()
        with httpx.Client() as client:
            started = time.monotonic()
            response = client.post(
                f"{server.url}/ojs/v1/jobs",
                json={"type": "t", "args": [], "options": {"queue": "f"}},
                timeout=15,
            )
            assert time.monotonic() - started < 5
            assert response.status_code == 503, response.text
            assert response.json()["error"]["retryable"] is True
            started = time.monotonic()
            response = client.post(
                f"{server.url}/ojs/v1/workers/fetch",
                json={"queues": ["f"], "worker_id": "w"},
                timeout=15,
            )
            assert time.monotonic() - started < 5
            assert response.status_code == 503, response.text
            health = client.get(f"{server.url}/ojs/v1/health", timeout=15)
            assert health.status_code == 503, health.text
            outage_ends = time.monotonic() + OUTAGE_SECONDS
            while time.monotonic() < outage_ends:  # keep asking while Redis stays away
                for path, body in (
                    ("jobs", {"type": "t", "args": [], "options": {"queue": "f"}}),
                    ("workers/fetch", {"queues": ["f"], "worker_id": "w"}),
                ):
                    response = client.post(f"{server.url}/ojs/v1/{path}", json=body, timeout=15)
                    assert response.status_code == 503, response.text
                time.sleep(0.05)
            own_redis.start()
            deadline = time.monotonic() + 15
            while client.get(f"{server.url}/ojs/v1/health", timeout=15).status_code != 200:
                assert time.monotonic() < deadline, "no recovery within 15 s"
                time.sleep(0.1)
            acknowledged.add(enqueue(server.url, "f", 99))
            fetched: set[str] = set()
            deadline = time.monotonic() + 15
            while fetched != acknowledged and time.monotonic() < deadline:
                fetched.update(fetch(client, server.url, "f", "w", count=10))
            assert fetched == acknowledged
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert "Escalation" not in log and "Traceback" not in log, log
