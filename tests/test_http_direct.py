"""The direct path (:mod:`ojs_actors.http.direct`) at the ASGI level: it answers byte for
byte as Quart does, and handles what only a real connection shows (chunked bodies,
clients that go away)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import System

MEDIA_TYPE = "application/openjobspec+json"
Message = dict[str, Any]


@dataclass
class Exchange:
    """What the app sent back for one request."""

    messages: list[Message] = field(default_factory=list)

    @property
    def status(self) -> int:
        status: int = self.messages[0]["status"]
        return status

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    def json(self) -> Any:
        return json.loads(self.body)


def scope(path: str, headers: Sequence[tuple[bytes, bytes]], method: str = "POST") -> Message:
    return {
        "type": "http",
        "asgi": {"spec_version": "2.1", "version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "extensions": {},
    }


async def exchange(
    app: Callable[..., Awaitable[None]],
    path: str,
    chunks: Sequence[bytes],
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    disconnect: trio.Event | None = None,
) -> Exchange:
    """Send ``chunks`` as the body; after them, ``http.disconnect`` once ``disconnect`` is set
    (never, without one)."""
    pending = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    result = Exchange()

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        await (disconnect if disconnect is not None else trio.Event()).wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        result.messages.append(message)

    all_headers = [(b"content-type", MEDIA_TYPE.encode()), *headers]
    with trio.fail_after(10):
        await app(scope(path, all_headers), receive, send)
    return result


def apps(system: System, **settings: Any) -> tuple[Any, Any]:
    """The app with the direct path, and the app with Quart serving everything."""
    return (
        create_app(system, HttpSettings(direct_routes=True, **settings)),
        create_app(system, HttpSettings(direct_routes=False, **settings)),
    )


REQUEST_ID = (b"x-request-id", b"trace-7")


def comparable(result: Exchange) -> tuple[int, list[tuple[bytes, bytes]], Any]:
    """Status, headers and body with the parts that differ per job (id, times) masked."""
    body = result.json()
    job = body.get("job")
    if isinstance(job, dict):
        for name in ("id", "created_at", "enqueued_at"):
            job[name] = "*"
    headers = [(n, b"*" if n == b"location" else v) for n, v in result.headers]
    return result.status, headers, body


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/ojs/v1/jobs", {"type": "email.send", "args": [1, "two"]}),
        ("/ojs/v1/jobs", {"type": "Bad Type", "args": []}),
        ("/ojs/v1/jobs", "not an object"),
        ("/ojs/v1/jobs/batch", {"jobs": []}),
        ("/ojs/v1/workers/fetch", {"queues": ["empty"]}),
        ("/ojs/v1/workers/ack", {"job_id": "019414d4-0000-7000-8000-000000000000"}),
        ("/ojs/v1/workers/nack", {"job_id": 7}),
    ],
)
async def test_direct_answers_as_quart_does(system: System, path: str, body: Any) -> None:
    direct, quart = apps(system)
    raw = json.dumps(body).encode()
    served = await exchange(direct, path, [raw], headers=[REQUEST_ID])
    reference = await exchange(quart, path, [raw], headers=[REQUEST_ID])
    assert comparable(served) == comparable(reference)


async def test_invalid_json_and_wrong_media_type_answer_as_quart_does(system: System) -> None:
    direct, quart = apps(system)
    for raw, headers in (
        (b'{"type": ', [REQUEST_ID]),
        (b"\xff\xfe", [REQUEST_ID]),
        (b"{}", [REQUEST_ID, (b"content-type", b"text/plain")]),
    ):
        # the first Content-Type counts, as with werkzeug: put the odd one first
        ordered = sorted(headers, key=lambda h: h[0] != b"content-type")
        served = await exchange(direct, "/ojs/v1/jobs", [raw], headers=ordered)
        reference = await exchange(quart, "/ojs/v1/jobs", [raw], headers=ordered)
        assert (served.status, served.headers, served.body) == (
            reference.status,
            reference.headers,
            reference.body,
        )


async def test_a_body_in_chunks_is_read_whole(system: System) -> None:
    direct, _ = apps(system)
    raw = json.dumps({"type": "email.send", "args": ["x" * 100]}).encode()
    result = await exchange(direct, "/ojs/v1/jobs", [raw[:10], raw[10:50], raw[50:]])
    assert result.status == 201
    assert result.json()["job"]["args"] == ["x" * 100]


@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_over_the_limit_is_413_as_with_quart(system: System, declared: bool) -> None:
    raw = json.dumps({"type": "email.send", "args": ["x" * 600]}).encode()
    headers = [REQUEST_ID, *([(b"content-length", str(len(raw)).encode())] if declared else [])]
    answers = [
        await exchange(app, "/ojs/v1/jobs", [raw[:300], raw[300:]], headers=headers)
        for app in apps(system, max_body_bytes=512)
    ]
    assert answers[0].status == answers[1].status == 413
    assert answers[0].body == answers[1].body
    assert answers[0].json()["error"]["code"] == "envelope_too_large"


async def test_a_handler_crash_is_a_logged_500(
    system: System, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(system, "enqueue", broken)
    direct, quart = apps(system)
    raw = json.dumps({"type": "email.send", "args": []}).encode()
    served = await exchange(direct, "/ojs/v1/jobs", [raw], headers=[REQUEST_ID])
    reference = await exchange(quart, "/ojs/v1/jobs", [raw], headers=[REQUEST_ID])
    assert served.status == reference.status == 500
    assert served.body == reference.body
    assert served.json()["error"]["code"] == "internal_error"
    assert any("unhandled error on POST /ojs/v1/jobs" in r.message for r in caplog.records)


async def test_no_answer_to_a_client_gone_before_its_body_arrived(system: System) -> None:
    direct, _ = apps(system)
    gone = trio.Event()
    gone.set()
    result = await exchange(direct, "/ojs/v1/jobs", [], disconnect=gone)
    assert result.messages == []


async def test_a_long_poll_fetch_ends_when_its_client_goes_away(system: System) -> None:
    direct, _ = apps(system)
    gone = trio.Event()
    outcome: list[Exchange] = []
    body = json.dumps({"queues": ["later"], "wait_ms": 30_000}).encode()

    async def poll() -> None:
        outcome.append(await exchange(direct, "/ojs/v1/workers/fetch", [body], disconnect=gone))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.sleep(0.2)
        gone.set()
    assert outcome[0].messages == []
    # the abandoned poll claimed nothing: a job enqueued now is there for the next worker
    await system.enqueue({"type": "email.send", "args": [], "options": {"queue": "later"}})
    [job] = await system.fetch(["later"])
    assert job.type == "email.send"


async def test_other_methods_and_paths_stay_with_quart(system: System) -> None:
    direct, quart = apps(system)
    for method, path in (("GET", "/ojs/v1/jobs"), ("POST", "/ojs/v1/jobs/"), ("GET", "/nope")):
        answers = []
        for app in (direct, quart):
            result = Exchange()
            pending = [{"type": "http.request", "body": b"", "more_body": False}]

            async def receive(pending: list[Message] = pending) -> Message:
                if pending:
                    return pending.pop()
                await trio.sleep_forever()
                raise AssertionError("unreachable")

            async def send(message: Message, into: Exchange = result) -> None:
                into.messages.append(message)

            with trio.fail_after(10):
                await app(scope(path, [REQUEST_ID], method), receive, send)
            answers.append((result.status, result.headers, result.body))
        assert answers[0] == answers[1]
        assert answers[0][0] in (404, 405)
