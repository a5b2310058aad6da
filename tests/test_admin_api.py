"""The admin API (ojs-admin-api) and the root probes, end to end: the real app over a real
System on the memory, SQLite and Redis backends (the dead letter queue and the counts
are each backend's own).

Bulk operations act only with ``"confirm": true`` (ojs-admin-api §4, §8): anything else,
a missing ``confirm``, ``false``, ``"true"`` or ``1``, is a 400 that changes nothing.
"""

from __future__ import annotations

import json as jsonlib
from typing import Any

import pytest
import trio

from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import System
from ojs_actors.system.throughput import Throughput

MEDIA_TYPE = "application/openjobspec+json"
UNKNOWN_ID = "019414d4-0000-7000-8000-000000000000"
DEADLINE = 10  # seconds


@pytest.fixture
def api(each_system: System) -> Any:
    return create_app(each_system, HttpSettings()).test_client()


async def call(
    client: Any, method: str, path: str, json: Any = None, status: int = 200
) -> dict[str, Any]:
    with trio.fail_after(DEADLINE):
        response = await client.open(path, method=method, json=json)
        raw = await response.get_data()
    assert response.status_code == status, raw
    assert response.headers["X-Request-Id"]
    if status == 204:
        assert not raw
        return {}
    assert response.headers["Content-Type"] == MEDIA_TYPE
    body: dict[str, Any] = jsonlib.loads(raw)
    if status >= 400:
        error = body["error"]
        assert isinstance(error["code"], str) and error["message"]
        assert isinstance(error["retryable"], bool)
    return body


async def enqueue(client: Any, queue: str, job_type: str = "test.job", **options: Any) -> str:
    body = {"type": job_type, "args": [], "options": {"queue": queue, **options}}
    job_id: str = (await call(client, "POST", "/ojs/v1/jobs", body, 201))["job"]["id"]
    return job_id


async def dead_letter(client: Any, queue: str, job_type: str = "test.job") -> str:
    """A job failed once with ``on_exhaustion: dead_letter``: in the dead letter queue."""
    retry = {"max_attempts": 1, "on_exhaustion": "dead_letter"}
    job_id = await enqueue(client, queue, job_type, retry=retry)
    fetched = await call(
        client, "POST", "/ojs/v1/workers/fetch", {"queues": [queue], "worker_id": "w-dlq"}
    )
    assert [job["id"] for job in fetched["jobs"]] == [job_id]
    nack = {"job_id": job_id, "error": {"code": "handler_error", "message": "boom"}}
    await call(client, "POST", "/ojs/v1/workers/nack", nack)
    return job_id


async def state_of(client: Any, job_id: str) -> str:
    state: str = (await call(client, "GET", f"/ojs/v1/admin/jobs/{job_id}"))["state"]
    return state


# -- statistics, queues, jobs, workers ---------------------------------------------------


async def test_stats_count_jobs_queues_and_workers(api: Any) -> None:
    await enqueue(api, "stats-a")
    await enqueue(api, "stats-b")
    await dead_letter(api, "stats-c")
    stats = await call(api, "GET", "/ojs/v1/admin/stats")
    assert stats["queues"] == 3
    assert stats["workers"] == 1  # w-dlq fetched
    assert stats["jobs"]["available"] == 2
    assert stats["jobs"]["discarded"] == 1
    assert stats["jobs"]["completed"] == 0
    assert stats["throughput"] == {"processed_per_minute": 0.0, "failed_per_minute": 0.0}
    assert stats["uptime_seconds"] >= 0


def test_throughput_is_the_change_between_reads() -> None:
    rates = Throughput()
    assert rates.observe(0, 10, 1) == (0.0, 0.0)
    assert rates.observe(500, 20, 1) == (0.0, 0.0)  # too close to tell
    assert rates.observe(30_000, 40, 4) == (60.0, 6.0)
    assert rates.observe(40_000, 5, 0) == (0.0, 0.0)  # counts fell (purge): start over


async def test_queues_list_detail_pause_and_resume(api: Any) -> None:
    for queue in ("q-one", "q-two", "q-three"):
        await enqueue(api, queue)
    listing = await call(api, "GET", "/ojs/v1/admin/queues?per_page=2&page=2")
    assert listing["pagination"] == {"total": 3, "page": 2, "per_page": 2, "has_more": False}
    [queue] = listing["items"]
    assert queue["name"] == "q-two"  # by name: q-one, q-three, q-two
    assert queue["state"] == "active" and queue["paused"] is False
    assert queue["counts"]["available"] == 1 and queue["counts"]["active"] == 0

    paused = await call(api, "POST", "/ojs/v1/admin/queues/q-one/pause")
    assert paused["paused"] is True and paused["state"] == "paused" and "paused_at" in paused
    fetched = await call(api, "POST", "/ojs/v1/workers/fetch", {"queues": ["q-one"]})
    assert fetched["jobs"] == []
    detail = await call(api, "GET", "/ojs/v1/admin/queues/q-one")
    assert detail["paused"] is True and detail["counts"]["available"] == 1
    resumed = await call(api, "POST", "/ojs/v1/admin/queues/q-one/resume")
    assert resumed["paused"] is False and resumed["state"] == "active"
    fetched = await call(api, "POST", "/ojs/v1/workers/fetch", {"queues": ["q-one"]})
    assert len(fetched["jobs"]) == 1

    await call(api, "GET", "/ojs/v1/admin/queues/no-such-queue", status=404)
    await call(api, "GET", "/ojs/v1/admin/queues?per_page=101", status=400)
    await call(api, "GET", "/ojs/v1/admin/queues?page=0", status=400)


async def test_job_detail_cancel_and_retry(api: Any) -> None:
    job_id = await enqueue(api, "jobs-q", "test.detail", meta={"k": "v"})
    detail = await call(api, "GET", f"/ojs/v1/admin/jobs/{job_id}")
    assert detail["id"] == job_id and detail["type"] == "test.detail"
    assert detail["queue"] == "jobs-q" and detail["state"] == "available"
    await call(api, "GET", f"/ojs/v1/admin/jobs/{UNKNOWN_ID}", status=404)

    await call(api, "POST", f"/ojs/v1/admin/jobs/{job_id}/retry", status=409)  # not discarded
    cancelled = await call(api, "POST", f"/ojs/v1/admin/jobs/{job_id}/cancel")
    assert cancelled["job"]["state"] == "cancelled"
    await call(api, "POST", f"/ojs/v1/admin/jobs/{job_id}/retry", status=409)

    discarded = await dead_letter(api, "jobs-q")
    retried = await call(api, "POST", f"/ojs/v1/admin/jobs/{discarded}/retry")
    assert retried["job"]["state"] == "available" and retried["job"]["attempt"] == 0
    await call(api, "POST", f"/ojs/v1/admin/jobs/{UNKNOWN_ID}/retry", status=404)


async def test_workers_are_listed_and_quieted(api: Any) -> None:
    empty = await call(api, "GET", "/ojs/v1/admin/workers")
    assert empty["items"] == [] and empty["summary"]["total"] == 0
    await call(api, "POST", "/ojs/v1/workers/fetch", {"queues": ["w-q"], "worker_id": "w-1"})
    await call(api, "POST", "/ojs/v1/workers/fetch", {"queues": ["w-q"], "worker_id": "w-2"})
    listing = await call(api, "GET", "/ojs/v1/admin/workers")
    assert [worker["id"] for worker in listing["items"]] == ["w-2", "w-1"]  # latest first
    assert listing["summary"]["running"] == 2 and listing["pagination"]["total"] == 2

    assert await call(api, "POST", "/ojs/v1/admin/workers/w-1/quiet") == {
        "id": "w-1",
        "state": "quiet",
    }
    beat = await call(api, "POST", "/ojs/v1/workers/heartbeat", {"worker_id": "w-1"})
    assert beat["state"] == "quiet"
    listing = await call(api, "GET", "/ojs/v1/admin/workers")
    assert listing["summary"]["quiet"] == 1
    await call(api, "POST", "/ojs/v1/admin/workers/nobody/quiet", status=404)


# -- bulk retry and its confirmation -----------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"filter": {"state": "discarded"}},
        {"filter": {"state": "discarded"}, "confirm": False},
        {"filter": {"state": "discarded"}, "confirm": "true"},
        {"filter": {"state": "discarded"}, "confirm": 1},
        {"filter": {"state": "discarded"}, "confirm": None},
    ],
    ids=["missing", "false", "string", "one", "null"],
)
async def test_bulk_retry_needs_confirm_true(api: Any, body: dict[str, Any]) -> None:
    job_id = await dead_letter(api, "bulk-q")
    reply = await call(api, "POST", "/ojs/v1/admin/jobs/bulk/retry", body, 400)
    assert reply["error"]["code"] == "invalid_request"
    assert reply["error"]["details"]["field"] == "confirm"
    assert await state_of(api, job_id) == "discarded"  # nothing was retried


@pytest.mark.parametrize(
    "body",
    [
        {"filter": {"error_type": "Timeout"}, "confirm": True},  # would widen: refused
        {"filter": {"state": "completed"}, "confirm": True},
        {"filter": {"since": "yesterday"}, "confirm": True},
        {"filter": {"queue": "Not A Queue"}, "confirm": True},
        {"filter": {"type": ""}, "confirm": True},
        {"filter": ["discarded"], "confirm": True},
    ],
    ids=["unknown-field", "state", "since", "queue", "type", "not-object"],
)
async def test_bulk_retry_refuses_a_bad_filter(api: Any, body: dict[str, Any]) -> None:
    job_id = await dead_letter(api, "bulk-q")
    reply = await call(api, "POST", "/ojs/v1/admin/jobs/bulk/retry", body, 400)
    assert reply["error"]["code"] == "invalid_request"
    assert await state_of(api, job_id) == "discarded"


async def test_bulk_retry_takes_what_the_filter_matches(api: Any) -> None:
    email = [await dead_letter(api, "bulk-email", "email.send") for _ in range(2)]
    other_type = await dead_letter(api, "bulk-email", "sms.send")
    other_queue = await dead_letter(api, "bulk-other", "email.send")
    body = {"filter": {"queue": "bulk-email", "type": "email.*"}, "confirm": True}
    reply = await call(api, "POST", "/ojs/v1/admin/jobs/bulk/retry", body)
    assert reply == {
        "action": "retry",
        "matched": 2,
        "succeeded": 2,
        "failed": 0,
        "retried": 2,
        "errors": [],
    }
    for job_id in email:
        assert await state_of(api, job_id) == "available"
    assert await state_of(api, other_type) == "discarded"
    assert await state_of(api, other_queue) == "discarded"

    until = {"filter": {"until": "2000-01-01T00:00:00Z"}, "confirm": True}
    reply = await call(api, "POST", "/ojs/v1/admin/jobs/bulk/retry", until)
    assert reply["matched"] == 0
    everything = {"confirm": True}
    reply = await call(api, "POST", "/ojs/v1/admin/dead-letter/retry", everything)
    assert reply["matched"] == reply["succeeded"] == 2


# -- the dead letter queue ---------------------------------------------------------------


async def test_dead_letter_list_stats_retry_and_delete(api: Any) -> None:
    empty = await call(api, "GET", "/ojs/v1/admin/dead-letter/stats")
    assert empty == {"total": 0, "by_queue": {}, "oldest_at": None, "newest_at": None}
    first = await dead_letter(api, "dlq-a", "report.build")
    second = await dead_letter(api, "dlq-b", "email.send")
    third = await dead_letter(api, "dlq-b", "email.send")

    listing = await call(api, "GET", "/ojs/v1/admin/dead-letter?per_page=2")
    assert [job["id"] for job in listing["items"]] == [first, second]  # oldest first
    assert listing["pagination"] == {"total": 3, "page": 1, "per_page": 2, "has_more": True}
    by_queue = await call(api, "GET", "/ojs/v1/admin/dead-letter?queue=dlq-b")
    assert [job["id"] for job in by_queue["items"]] == [second, third]
    by_type = await call(api, "GET", "/ojs/v1/admin/dead-letter?type=report.*&state=discarded")
    assert [job["id"] for job in by_type["items"]] == [first]
    assert by_type["pagination"]["total"] == 1
    await call(api, "GET", "/ojs/v1/admin/dead-letter?state=active", status=400)
    await call(api, "GET", "/ojs/v1/admin/dead-letter?since=soon", status=400)

    stats = await call(api, "GET", "/ojs/v1/admin/dead-letter/stats")
    assert stats["total"] == 3 and stats["by_queue"] == {"dlq-a": 1, "dlq-b": 2}
    assert stats["oldest_at"] <= stats["newest_at"]

    retried = await call(api, "POST", f"/ojs/v1/admin/dead-letter/{first}/retry")
    assert retried["job"]["state"] == "available" and retried["job"]["attempt"] == 0
    await call(api, "POST", f"/ojs/v1/admin/dead-letter/{first}/retry", status=404)

    await call(api, "DELETE", f"/ojs/v1/admin/dead-letter/{second}", status=204)
    await call(api, "DELETE", f"/ojs/v1/admin/dead-letter/{second}", status=404)
    assert (await call(api, "GET", "/ojs/v1/admin/dead-letter/stats"))["total"] == 1


async def test_dead_letter_purge_needs_confirm_and_takes_its_filter(api: Any) -> None:
    old = await dead_letter(api, "purge-q")
    refused = await call(api, "DELETE", "/ojs/v1/admin/dead-letter", {"queue": "purge-q"}, 400)
    assert refused["error"]["details"]["field"] == "confirm"
    both = {"older_than": "2030-01-01T00:00:00Z", "until": "2030-01-01T00:00:00Z", "confirm": True}
    await call(api, "DELETE", "/ojs/v1/admin/dead-letter", both, 400)

    none = {"older_than": "2000-01-01T00:00:00Z", "confirm": True}
    assert (await call(api, "DELETE", "/ojs/v1/admin/dead-letter", none))["purged_count"] == 0
    purged = await call(
        api, "DELETE", "/ojs/v1/admin/dead-letter", {"queue": "purge-q", "confirm": True}
    )
    assert purged["purged_count"] == 1 and purged["action"] == "delete"
    await call(api, "GET", f"/ojs/v1/admin/jobs/{old}", status=404)


# -- probes ------------------------------------------------------------------------------


async def test_root_probes_answer_as_the_versioned_ones(api: Any) -> None:
    health = await call(api, "GET", "/health")
    assert health["status"] == "ok" and health["backend"]["status"] == "ok"
    versioned = await call(api, "GET", "/ojs/v1/health")
    assert (
        versioned.keys() == health.keys()
        and versioned["backend"].keys() == health["backend"].keys()
    )
    ready = await call(api, "GET", "/ready")
    assert ready["status"] == "ready" and ready["backend"]["status"] == "ok"


async def test_root_probes_are_open_and_the_admin_api_is_not(each_system: System) -> None:
    keyed = create_app(each_system, HttpSettings(api_keys=("secret",))).test_client()
    for path in ("/health", "/ready"):
        assert (await keyed.get(path)).status_code == 200
    assert (await keyed.get("/ojs/v1/admin/stats")).status_code == 401
