"""SIGKILL an ``ojs-actors serve --backend redis`` process and start a new one on the same
Redis: every acknowledged enqueue and ack survives, claimed-but-unacked jobs come back
after their visibility timeout, and a job scheduled before the kill is promoted after."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from test_redis_replicas import Server, enqueue

VISIBILITY_MS = 1_500


def test_sigkill_and_restart_loses_nothing(redis_url: str, tmp_path: Path) -> None:
    first = Server(redis_url, tmp_path / "first.log")
    try:
        enqueued = {enqueue(first.url, "k", n) for n in range(30)}
        scheduled = httpx.post(
            f"{first.url}/ojs/v1/jobs",
            json={"type": "later", "args": [], "options": {"queue": "k", "delay_until": "+PT2S"}},
            timeout=10,
        ).json()["job"]["id"]
        with httpx.Client() as client:
            response = client.post(
                f"{first.url}/ojs/v1/workers/fetch",
                json={"queues": ["k"], "worker_id": "w", "count": 10,
                      "visibility_timeout_ms": VISIBILITY_MS},
                timeout=10,
            )  # fmt: skip
            claimed = [job["id"] for job in response.json()["jobs"]]
            assert len(claimed) == 10
            acked = set(claimed[:5])
            for job_id in acked:
                ack = client.post(
                    f"{first.url}/ojs/v1/workers/ack", json={"job_id": job_id}, timeout=10
                )
                assert ack.status_code == 200, ack.text
    finally:
        first.kill()
    second = Server(redis_url, tmp_path / "second.log")
    try:
        with httpx.Client() as client:
            for job_id in enqueued | {scheduled}:
                response = client.get(f"{second.url}/ojs/v1/jobs/{job_id}", timeout=10)
                assert response.status_code == 200, response.text
                state = response.json()["job"]["state"]
                assert (state == "completed") == (job_id in acked), (job_id, state)
            seen: dict[str, int] = {}
            deadline = time.monotonic() + 15
            while set(seen) != (enqueued | {scheduled}) - acked and time.monotonic() < deadline:
                response = client.post(
                    f"{second.url}/ojs/v1/workers/fetch",
                    json={"queues": ["k"], "worker_id": "w2", "count": 10},
                    timeout=10,
                )
                for job in response.json()["jobs"]:
                    assert job["id"] not in acked
                    seen[job["id"]] = job["attempt"]
                    done = client.post(
                        f"{second.url}/ojs/v1/workers/ack", json={"job_id": job["id"]}, timeout=10
                    )
                    assert done.status_code == 200, done.text
                time.sleep(0.1)
            assert set(seen) == (enqueued | {scheduled}) - acked
            assert {job_id for job_id, attempt in seen.items() if attempt == 2} == set(claimed[5:])
    finally:
        second.stop()
    for name in ("first.log", "second.log"):
        assert "Traceback" not in (tmp_path / name).read_text(errors="replace")
