"""Webhooks (ojs-webhooks): events of the outbox POSTed, signed, to real HTTP receivers on
loopback, retried with backoff while a receiver is down, resumed after a restart, sent
once by a cluster of replicas; subscriptions and deliveries through the HTTP API.

The receiver is a small trio TCP server speaking HTTP/1.1 with h11 (hypercorn's own HTTP
parser); it checks every signature the way ojs-webhooks §14.5 tells receivers to, with
nothing of the server's code. Time runs on trio's autojump clock where the backend
allows (the retry schedule waits minutes), over real sockets.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
from trio.testing import MockClock

from ojs_actors.backends import EventFilter, MemoryBackend, SqliteBackend, create_backend
from ojs_actors.backends.redis import RedisBackend
from ojs_actors.core import InvalidRequest, NotFound, webhooks
from ojs_actors.core.cron import parse_cron
from ojs_actors.core.events import cron_event
from ojs_actors.http import HttpSettings, create_app
from ojs_actors.system import Settings, System, open_system
from ojs_actors.system.clock import Clock
from ojs_actors.system.tenancy import acting_as
from ojs_actors.system.webhook_dispatcher import LEASE_SECONDS, event_tenant

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SECRET = "whsec_test_receiver_secret"


def clock_at(start_ms: int) -> Clock:
    """Epoch ms reading ``start_ms`` at trio time 0 (one clock for every system)."""
    return lambda: start_ms + int(trio.current_time() * 1000)


def verify_signature(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """ojs-webhooks §8.2 as a receiver writes it (one of the signatures is ours)."""
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return any(
        hmac.compare_digest(expected.hexdigest(), part.strip().removeprefix("sha256="))
        for part in header.split(",")
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def delivery_id(self) -> str:
        return self.headers["x-ojs-delivery-id"]


class Receiver:
    """A webhook endpoint on a loopback port: records each request (and whether its
    signature verifies with ``secret``), answers ``status``. :meth:`down` closes the
    listening socket (connections are refused) and :meth:`up` opens it again, same port."""

    def __init__(self, nursery: trio.Nursery, secret: str = SECRET) -> None:
        self.nursery = nursery
        self.secret = secret
        self.status = 200
        self.location: str | None = None
        self.delay = 0.0
        """Seconds to wait before answering (after recording the request)."""
        self.port = 0
        self.received: list[Received] = []
        self.arrived = trio.Event()
        self._scope: trio.CancelScope | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/ojs"

    async def up(self) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        self._scope = trio.CancelScope()
        self.nursery.start_soon(self._serve, listeners, self._scope)

    def down(self) -> None:
        assert self._scope is not None
        self._scope.cancel()

    async def _serve(self, listeners: list[trio.SocketListener], scope: trio.CancelScope) -> None:
        with scope:
            try:
                await trio.serve_listeners(self._connection, listeners)
            finally:
                for listener in listeners:
                    await listener.aclose()

    async def _connection(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        async with stream:
            request: h11.Request | None = None
            body = bytearray()
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            assert request is not None
            headers = {name.decode().lower(): value.decode() for name, value in request.headers}
            verified = verify_signature(
                self.secret,
                headers.get("x-ojs-timestamp", ""),
                bytes(body),
                headers.get("x-ojs-signature", ""),
            )
            self.received.append(Received(request.target.decode(), headers, bytes(body), verified))
            self.arrived.set()
            self.arrived = trio.Event()
            extra = [("Location", self.location)] if self.location else []
            reply = h11.Response(
                status_code=self.status,
                headers=[("Content-Length", "2"), ("Connection", "close"), *extra],
            )
            await trio.sleep(self.delay)
            try:
                await stream.send_all(
                    connection.send(reply)
                    + connection.send(h11.Data(data=b"OK"))
                    + connection.send(h11.EndOfMessage())
                )
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the sender gave up meanwhile

    def delivery_ids(self) -> set[str]:
        return {request.delivery_id for request in self.received}

    async def wait_for(self, deliveries: int, *, seconds: float) -> None:
        """Until ``deliveries`` distinct deliveries arrived, within ``seconds`` (trio time)."""
        with trio.fail_after(seconds):
            while len(self.delivery_ids()) < deliveries:
                await self.arrived.wait()


@asynccontextmanager
async def receiving(secret: str = SECRET) -> AsyncIterator[Receiver]:
    async with trio.open_nursery() as nursery:
        receiver = Receiver(nursery, secret)
        await receiver.up()
        yield receiver
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def running(backend: Any, poll: float = 1.0, **settings: Any) -> AsyncIterator[System]:
    async with open_system(
        backend, clock=clock_at(START), settings=Settings(poll_interval=poll, **settings)
    ) as system:
        yield system


async def complete_jobs(system: System, count: int, queue: str = "hooks") -> list[str]:
    """Enqueue ``count`` jobs, fetch and ack them: one ``job.completed`` event each."""
    made = []
    for n in range(count):
        job = await system.enqueue({"type": "hook.test", "args": [n], "options": {"queue": queue}})
        made.append(job.id)
    claimed = await system.fetch([queue], count=count, worker_id="w1")
    assert sorted(job.id for job in claimed) == sorted(made)
    for job in claimed:
        await system.ack(job.id, result={"n": job.args[0]})
    return made


async def subscribe(system: System, receiver: Receiver, **more: Any) -> dict[str, Any]:
    return await system.create_webhook_subscription(
        {"url": receiver.url, "events": ["job.completed"], "secret": receiver.secret, **more}
    )


async def pending_attempted(system: System, subscription_id: str, count: int) -> None:
    """Until ``count`` deliveries are pending after a failed attempt each (within a minute
    of trio time: SQLite under load lets the autojump clock run ahead of it)."""
    with trio.fail_after(60):
        while True:
            log, _ = await system.webhook_deliveries(subscription_id, "pending", 1000, 0)
            if len(log) == count and all(d["attempts"] >= 1 for d in log):
                return
            await trio.sleep(0.5)


async def settled(system: System, subscription_id: str, *, seconds: float = 5) -> list[Any]:
    """The subscription's delivery log once none of it is pending (the receiver has its
    request a moment before the dispatcher stores the outcome)."""
    with trio.fail_after(seconds):
        while True:
            log, _ = await system.webhook_deliveries(subscription_id, None, 1000, 0)
            if all(delivery["state"] != "pending" for delivery in log):
                return log
            await trio.sleep(0.05)


def completed_jobs(receiver: Receiver) -> set[str]:
    return {r.event["subject"] for r in receiver.received if r.event["type"] == "job.completed"}


@pytest.fixture
def sqlite_clock() -> MockClock:
    """SQLite answers from a thread, idle for a moment in real time while it works: the
    clock jumps only after 50 ms of real idleness, not to run ahead of it (on a loaded
    machine a shorter threshold lets minutes of trio time pass during a few slow calls,
    and a process's stop time out while its SQLite calls are still running)."""
    return MockClock(autojump_threshold=0.05)


# -- delivery ------------------------------------------------------------------------------


async def test_deliveries_are_signed_and_carry_the_spec_headers(autojump_clock: Any) -> None:
    async with receiving() as receiver, running(MemoryBackend()) as system:
        subscription = await subscribe(system, receiver)
        jobs = await complete_jobs(system, 3)
        await receiver.wait_for(3, seconds=5)
        assert completed_jobs(receiver) == set(jobs)
        for request in receiver.received:
            assert request.verified
            assert request.path == "/hooks/ojs"
            assert request.headers["content-type"] == "application/json"
            assert request.headers["user-agent"].startswith("OJS-Webhook/1.0")
            assert request.headers["x-ojs-event-type"] == "job.completed"
            assert request.headers["x-ojs-subscription-id"] == subscription["id"]
            assert request.event["specversion"] == "1.0"
            assert request.event["data"]["result"] == {"n": jobs.index(request.event["subject"])}
        # Only the subscribed type: no job.enqueued / job.started went out.
        assert len(receiver.received) == 3
        log = await settled(system, subscription["id"])
        assert len(log) == 3
        assert {d["state"] for d in log} == {"delivered"}
        assert {d["id"] for d in log} == receiver.delivery_ids()
        assert all(d["attempts"] == 1 and d["history"][0]["status_code"] == 200 for d in log)


async def test_receiver_down_for_a_while_loses_nothing(autojump_clock: Any) -> None:
    """The receiver refuses connections for three minutes: every delivery is retried on the
    schedule (30 s, 2 min, …) and all arrive once it is back, none lost; meanwhile jobs
    keep being processed at full pace."""
    async with receiving() as receiver, running(MemoryBackend()) as system:
        subscription = await subscribe(system, receiver)
        receiver.down()
        started = trio.current_time()
        jobs = await complete_jobs(system, 5)
        more = await complete_jobs(system, 5, queue="other")  # processing is not held up
        assert trio.current_time() - started < 1
        await trio.sleep(40)  # attempts at 0 s and 30 s: both refused
        pending, total = await system.webhook_deliveries(subscription["id"], "pending", 50, 0)
        assert total == 10 and receiver.received == []
        for delivery in pending:
            assert delivery["attempts"] == 2
            assert delivery["last_status_code"] is None and delivery["last_error"]
            assert delivery["next_attempt_at"] > START + 40_000
        await trio.sleep(140)  # the third attempt (2 min after the second) is refused too
        await receiver.up()
        back = trio.current_time()
        await receiver.wait_for(10, seconds=11 * 60)
        assert trio.current_time() - back <= 10 * 60  # the fourth attempt, 10 min later
        assert completed_jobs(receiver) == set(jobs + more)
        assert all(request.verified for request in receiver.received)
        log = await settled(system, subscription["id"])
        assert {d["state"] for d in log} == {"delivered"}
        assert {d["attempts"] for d in log} == {4}


async def test_a_client_error_is_final_and_can_be_retried_by_hand(autojump_clock: Any) -> None:
    async with receiving() as receiver, running(MemoryBackend()) as system:
        subscription = await subscribe(system, receiver)
        receiver.status = 410
        await complete_jobs(system, 1)
        await receiver.wait_for(1, seconds=5)
        await settled(system, subscription["id"])
        await trio.sleep(150)  # a 4xx is not retried (the next attempts were at 30 s, 2 min)
        assert len(receiver.received) == 1
        [dead], _ = await system.webhook_deliveries(subscription["id"], "dead", 50, 0)
        assert dead["attempts"] == 1 and dead["last_status_code"] == 410
        receiver.status = 202
        retried = await system.retry_webhook_delivery(dead["id"])
        assert retried["state"] == "pending"
        [delivered] = await settled(system, subscription["id"])
        assert delivered["state"] == "delivered" and delivered["attempts"] == 1
        assert [r.delivery_id for r in receiver.received] == [dead["id"]] * 2  # the same id


async def test_server_errors_are_retried_until_they_succeed(autojump_clock: Any) -> None:
    async with receiving() as receiver, running(MemoryBackend()) as system:
        subscription = await subscribe(system, receiver)
        receiver.status = 503
        await complete_jobs(system, 1)
        await receiver.wait_for(1, seconds=5)
        await trio.sleep(31)
        assert len(receiver.received) == 2  # immediately, then 30 s later
        receiver.status = 200
        await trio.sleep(121)
        assert len(receiver.received) == 3 and len(receiver.delivery_ids()) == 1
        [delivered], _ = await system.webhook_deliveries(subscription["id"], "delivered", 50, 0)
        assert [a["status_code"] for a in delivered["history"]] == [503, 503, 200]


async def test_event_filters_and_wildcards(autojump_clock: Any) -> None:
    async with receiving() as receiver, running(MemoryBackend()) as system:
        await system.create_webhook_subscription(
            {
                "url": receiver.url,
                "events": ["job.*"],
                "filter": {"queues": ["billing"]},
                "secret": SECRET,
            }
        )
        await complete_jobs(system, 2, queue="elsewhere")
        [job] = await complete_jobs(system, 1, queue="billing")
        await receiver.wait_for(3, seconds=5)
        await trio.sleep(5)
        kinds = sorted(r.event["type"] for r in receiver.received)
        assert kinds == ["job.completed", "job.enqueued", "job.started"]
        assert {r.event["subject"] for r in receiver.received} == {job}


async def test_a_new_subscription_gets_no_history(autojump_clock: Any) -> None:
    async with receiving() as receiver, running(MemoryBackend()) as system:
        await complete_jobs(system, 2)
        await trio.sleep(5)
        await subscribe(system, receiver)
        [job] = await complete_jobs(system, 1)
        await receiver.wait_for(1, seconds=5)
        await trio.sleep(5)
        assert completed_jobs(receiver) == {job}


async def test_test_endpoint_and_secret_rotation(autojump_clock: Any) -> None:
    async with receiving() as receiver, running(MemoryBackend()) as system:
        subscription = await subscribe(system, receiver)
        ping = await system.test_webhook_subscription(subscription["id"])
        assert ping["success"] and ping["status_code"] == 200 and ping["response_body"] == "OK"
        [request] = receiver.received
        assert request.event["type"] == "webhook.test" and request.verified
        rotated = await system.rotate_webhook_secret(subscription["id"])
        assert rotated["secret"] != SECRET
        # During the transition both signatures are sent: old and new receivers verify.
        [job] = await complete_jobs(system, 1)
        await receiver.wait_for(2, seconds=5)
        last = receiver.received[-1]
        assert last.verified and last.event["subject"] == job
        header, stamp = last.headers["x-ojs-signature"], last.headers["x-ojs-timestamp"]
        assert verify_signature(rotated["secret"], stamp, last.body, header)
        assert "secret" not in await system.webhook_subscription_info(subscription["id"])


async def test_inactive_and_deleted_subscriptions_get_nothing(autojump_clock: Any) -> None:
    async with receiving() as receiver, running(MemoryBackend()) as system:
        subscription = await subscribe(system, receiver)
        await system.update_webhook_subscription(subscription["id"], {"active": False})
        await complete_jobs(system, 1)
        await trio.sleep(10)
        assert receiver.received == []
        await system.update_webhook_subscription(subscription["id"], {"active": True})
        receiver.down()
        await complete_jobs(system, 1)
        await trio.sleep(5)  # one pending delivery, refused once
        _, pending = await system.webhook_deliveries(subscription["id"], "pending", 50, 0)
        assert pending == 1
        await system.delete_webhook_subscription(subscription["id"])
        await receiver.up()
        await trio.sleep(150)  # its pending delivery (due at 30 s, 2 min) was cancelled with it
        assert receiver.received == []
        assert (await system.webhook_deliveries(None, None, 50, 0))[1] == 0


# -- across restarts and replicas ----------------------------------------------------------


async def test_a_restart_resumes_where_the_cursor_was(
    tmp_path: Path, sqlite_clock: MockClock
) -> None:
    """Deliveries pending when the server stops are sent by the next one, and events not yet
    turned into deliveries are read from the committed cursor: nothing lost, nothing that
    was delivered sent again."""
    path = tmp_path / "ojs.db"
    async with receiving() as receiver:
        async with running(SqliteBackend(path)) as first:
            subscription = await subscribe(first, receiver)
            early = await complete_jobs(first, 2)
            await receiver.wait_for(2, seconds=60)
            await settled(first, subscription["id"], seconds=60)
            receiver.down()
            late = await complete_jobs(first, 3)
            await pending_attempted(first, subscription["id"], 3)  # refused once each
        await receiver.up()
        async with running(SqliteBackend(path)) as second:
            # A new process (a holder id of its own) waits for the old lease to run out,
            # then sends them at their next attempt (30 s after the first).
            await receiver.wait_for(5, seconds=LEASE_SECONDS + 600)
            assert completed_jobs(receiver) == set(early + late)
            assert len(receiver.received) == 5  # the two delivered before were not sent again
            log = await settled(second, subscription["id"], seconds=60)
            assert {d["state"] for d in log} == {"delivered"} and len(log) == 5


async def test_a_delivery_cut_by_a_stop_is_sent_again(autojump_clock: Any) -> None:
    """A process stopping while a receiver is still answering leaves the delivery pending
    (never failed nor dead): the next process sends it again, with the same delivery id."""
    store = MemoryBackend()  # one store, two processes one after the other
    async with receiving() as receiver:
        receiver.delay = 20.0
        async with running(store) as first:
            subscription = await subscribe(first, receiver)
            await complete_jobs(first, 1)
            await receiver.wait_for(1, seconds=5)  # received; the answer is 20 s away
        [cut] = (await first.webhook_deliveries(subscription["id"], None, 50, 0))[0]
        assert cut["state"] == "pending" and cut["attempts"] == 0
        receiver.delay = 0.0
        async with running(store) as second:
            [delivered] = await settled(second, subscription["id"], seconds=LEASE_SECONDS + 60)
        assert delivered["state"] == "delivered" and delivered["attempts"] == 1
        assert [r.delivery_id for r in receiver.received] == [cut["id"]] * 2


async def test_replicas_on_one_redis_deliver_each_event_once(redis_url: str) -> None:
    """Two server processes over one Redis: the lease holder delivers the events of jobs
    run through either, each once."""
    async with (
        receiving() as receiver,
        running(RedisBackend(redis_url), poll=0.2) as a,
        running(RedisBackend(redis_url), poll=0.2) as b,
    ):
        await subscribe(a, receiver)
        jobs = await complete_jobs(a, 4) + await complete_jobs(b, 4, queue="other")
        await receiver.wait_for(8, seconds=20)
        await trio.sleep(1)
        assert completed_jobs(receiver) == set(jobs)
        assert len(receiver.received) == 8 and all(r.verified for r in receiver.received)


@pytest.mark.parametrize("kind", ["nats", "kafka", "sqs"])
async def test_every_networked_backend_delivers(kind: str, request: pytest.FixtureRequest) -> None:
    """Through the backend protocol's parts alone: the same deliveries on NATS, Kafka (its
    state in Redis) and SQS/DynamoDB (moto's server), in real time."""
    fixture = "aws_options" if kind == "sqs" else f"{kind}_options"
    options: dict[str, Any] = dict(request.getfixturevalue(fixture))
    if kind == "sqs":
        names = ("endpoint_url", "region", "table", "queue_prefix")
        options = {name: options[name] for name in names}
    async with (
        receiving() as receiver,
        running(create_backend(kind, **options), poll=0.2) as system,
    ):
        subscription = await subscribe(system, receiver)
        jobs = await complete_jobs(system, 2)
        await receiver.wait_for(2, seconds=60)
        assert completed_jobs(receiver) == set(jobs)
        assert all(request.verified for request in receiver.received)
        log = await settled(system, subscription["id"], seconds=30)
        assert {d["state"] for d in log} == {"delivered"}


# -- the HTTP API ----------------------------------------------------------------------------


async def test_http_subscription_lifecycle(system: System) -> None:
    client = create_app(system, HttpSettings()).test_client()
    base = "/ojs/v1/webhooks/subscriptions"
    created = await client.post(
        base, json={"url": "https://example.com/hook", "events": ["job.completed"]}
    )
    assert created.status_code == 201
    sub = (await created.get_json())["subscription"]
    assert sub["secret"].startswith("whsec_") and sub["active"] is True
    got = await (await client.get(f"{base}/{sub['id']}")).get_json()
    assert "secret" not in got["subscription"]
    patched = await client.patch(f"{base}/{sub['id']}", json={"events": ["*"], "active": False})
    assert (await patched.get_json())["subscription"]["events"] == ["*"]
    listed = await (await client.get(base)).get_json()
    assert [s["id"] for s in listed["subscriptions"]] == [sub["id"]]
    deliveries = await client.get(f"/ojs/v1/webhooks/deliveries?subscription_id={sub['id']}")
    assert (await deliveries.get_json())["deliveries"] == []
    assert (await client.delete(f"{base}/{sub['id']}")).status_code == 200
    assert (await client.get(f"{base}/{sub['id']}")).status_code == 404
    assert (await client.get("/ojs/v1/webhooks/deliveries/del_nope")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/x", "events": ["job.completed"]},
        {"url": "not a url", "events": ["job.completed"]},
        {"url": "http://a b/", "events": ["job.completed"]},
        {"url": "https://example.com/x", "events": []},
        {"url": "https://example.com/x", "events": ["job.completed"], "active": "yes"},
        {"url": "https://example.com/x", "events": ["job.completed"], "filter": {"x": []}},
    ],
)
async def test_http_rejects_bad_subscriptions(system: System, body: dict[str, Any]) -> None:
    client = create_app(system, HttpSettings()).test_client()
    response = await client.post("/ojs/v1/webhooks/subscriptions", json=body)
    assert response.status_code == 400
    assert (await response.get_json())["error"]["code"] == "invalid_request"


async def test_allowed_hosts_bound_subscriptions_and_redirects(autojump_clock: Any) -> None:
    """With an allow-list, a subscription to another host is refused, and so is a redirect
    to one (the delivery is dead, never sent there)."""
    allowed = ("127.0.0.1",)
    with pytest.raises(InvalidRequest):
        webhooks.check_url("https://internal.example/", allowed)
    assert webhooks.host_allowed("a.example.com", ("*.example.com",))
    assert not webhooks.host_allowed("example.com.evil", ("*.example.com",))
    async with (
        receiving() as receiver,
        running(MemoryBackend(), webhook_allowed_hosts=allowed) as system,
    ):
        with pytest.raises(InvalidRequest):
            await system.create_webhook_subscription(
                {"url": "http://localhost:1/", "events": ["*"]}
            )
        receiver.status = 307
        receiver.location = f"http://localhost:{receiver.port}/elsewhere"
        subscription = await subscribe(system, receiver)
        await complete_jobs(system, 1)
        await receiver.wait_for(1, seconds=5)
        await trio.sleep(600)
        [dead], _ = await system.webhook_deliveries(subscription["id"], "dead", 50, 0)
        assert dead["last_error"].startswith("redirect refused") and dead["attempts"] == 1
        assert [r.path for r in receiver.received] == ["/hooks/ojs"]  # never followed


# -- tenants (ojs-webhooks §9.3) and webhook events (§11.1) ---------------------------------


def by_subscription(receiver: Receiver) -> dict[str, list[dict[str, Any]]]:
    """The events each subscription received, in arrival order."""
    got: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for request in receiver.received:
        got[request.headers["x-ojs-subscription-id"]].append(request.event)
    return got


async def test_a_tenants_subscription_gets_its_tenants_events_only(
    each_system: System, each_clock: MockClock
) -> None:
    """Three subscriptions on one receiver: acme's, globex's and an operator's. Each
    tenant's gets the events of its own jobs (its filter naming the queue as the tenant
    does), the operator's every job's; each tenant lists and reads only its deliveries."""
    system = each_system
    async with receiving() as receiver:
        with acting_as("acme"):
            acme = await subscribe(system, receiver, filter={"queues": ["hooks"]})
        with acting_as("globex"):
            globex = await subscribe(system, receiver)
        operator = await subscribe(system, receiver)
        assert (acme["tenant_id"], globex["tenant_id"]) == ("acme", "globex")
        assert "tenant_id" not in operator
        made: dict[str | None, str] = {}
        for tenant in ("acme", "globex", None):
            with acting_as(tenant):
                [made[tenant]] = await complete_jobs(system, 1)
        await receiver.wait_for(5, seconds=60)
        await trio.sleep(5)  # nothing more comes
        got = by_subscription(receiver)
        assert [e["subject"] for e in got[acme["id"]]] == [made["acme"]]
        assert [e["subject"] for e in got[globex["id"]]] == [made["globex"]]
        assert {e["subject"] for e in got[operator["id"]]} == set(made.values())
        assert len(receiver.received) == 5
        await settled(system, operator["id"], seconds=60)
        [acme_delivery], _ = await system.webhook_deliveries(acme["id"], None, 50, 0)
        assert (await system.webhook_deliveries(None, None, 50, 0))[1] == 5  # an operator's
        with acting_as("globex"):
            mine, total = await system.webhook_deliveries(None, None, 50, 0)
            assert total == 1 and mine[0]["subscription_id"] == globex["id"]
            with pytest.raises(NotFound):
                await system.webhook_deliveries(acme["id"], None, 50, 0)
            with pytest.raises(NotFound):
                await system.webhook_delivery_info(acme_delivery["id"])
            with pytest.raises(NotFound):
                await system.retry_webhook_delivery(acme_delivery["id"])


def test_the_tenant_of_an_event() -> None:
    """A tenant's job events name its queue; cron events the tenant their template names."""
    job_event = {"type": "job.completed", "data": {"queue": "hooks..t.acme"}}
    assert event_tenant(job_event) == "acme"
    assert event_tenant({"type": "job.completed", "data": {"queue": "hooks"}}) == "_default"
    body = {"name": "nightly", "expression": "0 3 * * *", "timezone": "UTC"}
    template = {"type": "report.build", "args": [], "meta": {"tenant_id": "globex"}}
    spec = parse_cron({**body, "job_template": template}, START)
    assert event_tenant(cron_event("cron.triggered", spec, START, {})) == "globex"
    plain = parse_cron({**body, "job_template": {"type": "report.build", "args": []}}, START)
    assert event_tenant(cron_event("cron.triggered", plain, START, {})) == "_default"


async def test_tenants_see_and_change_only_their_subscriptions(each_system: System) -> None:
    client = create_app(each_system, HttpSettings()).test_client()
    base = "/ojs/v1/webhooks/subscriptions"

    def acting(tenant: str | None) -> dict[str, str]:
        return {} if tenant is None else {"X-OJS-Tenant": tenant}

    body = {"url": "https://example.com/hook", "events": ["job.completed"]}
    created = await client.post(base, json=body, headers=acting("acme"))
    assert created.status_code == 201
    sub = (await created.get_json())["subscription"]
    assert sub["tenant_id"] == "acme"
    path = f"{base}/{sub['id']}"
    for method, url, payload in [
        ("GET", path, None),
        ("PATCH", path, {"active": False}),
        ("POST", f"{path}/rotate-secret", None),
        ("POST", f"{path}/test", None),
        ("DELETE", path, None),
        ("GET", f"/ojs/v1/webhooks/deliveries?subscription_id={sub['id']}", None),
    ]:
        response = await client.open(url, method=method, json=payload, headers=acting("globex"))
        assert response.status_code == 404, (method, url)
        assert (await response.get_json())["error"]["code"] == "not_found"

    async def listed(tenant: str | None) -> list[str]:
        response = await client.get(base, headers=acting(tenant))
        return [s["id"] for s in (await response.get_json())["subscriptions"]]

    assert await listed("globex") == []
    assert await listed("acme") == [sub["id"]]
    assert await listed(None) == [sub["id"]]  # an operator sees every tenant's
    seen = await (await client.get(path)).get_json()
    assert seen["subscription"]["tenant_id"] == "acme"
    patched = await client.patch(path, json={"active": False}, headers=acting("acme"))
    assert (await patched.get_json())["subscription"]["active"] is False
    assert (await client.delete(path, headers=acting("acme"))).status_code == 200
    assert await listed(None) == []


async def test_webhook_events_are_emitted_and_never_loop(
    each_system: System, each_clock: MockClock
) -> None:
    """A subscription to job events on a failing receiver, and one to ``webhook.*`` on a
    healthy one: the second gets webhook.failed, then webhook.dead, and its own
    subscription's creation; delivering those makes no further webhook event."""
    system = each_system
    async with receiving() as failing, receiving() as watcher:
        failing.status = 503
        jobs_sub = await subscribe(system, failing)
        await trio.sleep(1)  # the watcher gets the events from its creation on
        watch_sub = await subscribe(system, watcher, events=["webhook.*"])
        [job] = await complete_jobs(system, 1)
        await watcher.wait_for(2, seconds=60)  # its creation, the first failed attempt
        failing.status = 410  # the retry, 30 s later, is refused for good
        await watcher.wait_for(3, seconds=120)
        await trio.sleep(60)  # no more: nothing is said of delivering the watcher's events
        kinds = [r.event["type"] for r in watcher.received]
        assert sorted(kinds) == ["webhook.dead", "webhook.failed", "webhook.subscription.created"]
        events = {r.event["type"]: r.event for r in watcher.received}
        assert events["webhook.subscription.created"]["data"]["subscription_id"] == watch_sub["id"]
        failed, dead = events["webhook.failed"]["data"], events["webhook.dead"]["data"]
        assert failed["subscription_id"] == dead["subscription_id"] == jobs_sub["id"]
        assert failed["event_type"] == "job.completed" and failed["status_code"] == 503
        assert failed["attempt"] == 1 and failed["next_attempt_at"]
        assert dead["attempt"] == 2 and dead["status_code"] == 410
        assert failed["delivery_id"] == dead["delivery_id"]
        assert [r.event["subject"] for r in failing.received] == [job, job]
        await settled(system, watch_sub["id"], seconds=60)
        outcome_kinds = frozenset(webhooks.OUTCOME_EVENTS.values())
        outcomes = await system.events(EventFilter(types=outcome_kinds, limit=1000))
        assert [e["type"] for e in outcomes] == ["webhook.failed", "webhook.dead"]
        await system.delete_webhook_subscription(jobs_sub["id"])
        kinds = {"webhook.subscription.deleted"}
        [deleted] = await system.events(EventFilter(types=frozenset(kinds)))
        assert deleted["data"]["subscription_id"] == jobs_sub["id"]
