"""Tests of the actor runtime: mailboxes, ask/tell, supervision, snapshots, shutdown."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing

from ojs_actors.actors import (
    Actor,
    ActorCrashed,
    ActorError,
    ActorStopped,
    Backoff,
    ChildSpec,
    Envelope,
    MailboxFull,
    Restart,
    Strategy,
    Supervisor,
    SupervisorEscalation,
)

# -- helpers ------------------------------------------------------------------


async def settle() -> None:
    """Let every other task run until all of them are blocked."""
    await trio.testing.wait_all_tasks_blocked()


class Counter(Actor):
    """Counts ``"inc"``; crashes, hangs or waits on a gate on request."""

    reply_errors = (ValueError,)

    def __init__(
        self, name: str = "c", journal: list[Any] | None = None, gate: trio.Event | None = None
    ) -> None:
        self.name = name
        self.journal = journal if journal is not None else []
        self.gate = gate
        self.count = 0
        self.seen: list[Any] = []
        self.failures: list[BaseException] = []

    async def on_start(self) -> None:
        self.journal.append(("start", self.name))
        await super().on_start()

    async def on_stop(self) -> None:
        self.journal.append(("stop", self.name, trio.current_time()))

    async def on_failure(self, error: BaseException) -> None:
        self.failures.append(error)
        self.journal.append(("failed", self.name, trio.current_time()))

    async def receive(self, message: Any) -> Any:
        self.seen.append(message)
        match message:
            case "inc":
                self.count += 1
                return self.count
            case "get":
                return self.count
            case "crash":
                raise RuntimeError(f"{self.name} crashed")
            case "bad":
                raise ValueError("bad request")
            case "hold":
                assert self.gate is not None
                await self.gate.wait()
                return "released"
            case "hold-then-crash":
                assert self.gate is not None
                await self.gate.wait()
                raise RuntimeError(f"{self.name} crashed after hold")
            case "hang":
                await trio.sleep_forever()
            case ("sleep", seconds):
                await trio.sleep(seconds)
                return "slept"
            case ("echo", value):
                return value
        return None


class Factory:
    """A child ``start`` callable that remembers every instance it made."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.instances: list[Any] = []

    def __call__(self) -> Any:
        instance = self.make()
        self.instances.append(instance)
        return instance


class Outcome:
    """Runs a supervisor and records how :meth:`Supervisor.run` ended."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.finished = trio.Event()
        self.error: BaseException | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.sup.run(task_status=task_status)
        except Exception as error:
            self.error = error
        finally:
            self.finished.set()


async def ask_into(results: dict[str, Any], key: str, ref: Any, message: Any) -> None:
    """``ask`` and store the answer, or the runtime error it raised, under ``key``."""
    try:
        results[key] = await ref.ask(message)
    except ActorError as error:
        results[key] = error


# -- 1. ask / tell, FIFO ------------------------------------------------------


async def test_ask_and_tell_round_trip() -> None:
    sup = Supervisor("s", children=[ChildSpec("c", start=Counter)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("c")
        assert await ref.ask(("echo", "hello")) == "hello"
        await ref.tell("inc")
        ref.tell_nowait("inc")
        assert await ref.ask("get") == 2
        actor = sup.child("c")
        assert isinstance(actor, Counter)
        assert actor.seen == [("echo", "hello"), "inc", "inc", "get"]
        sup.request_stop()


async def test_reply_errors_answer_the_sender_without_crashing() -> None:
    sup = Supervisor("s", children=[ChildSpec("c", start=Counter)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("c")
        first = sup.child("c")
        assert await ref.ask("inc") == 1
        with pytest.raises(ValueError, match="bad request"):
            await ref.ask("bad")
        ref.tell_nowait("bad")  # a told reply error is dropped, not a crash
        assert await ref.ask("inc") == 2
        await settle()
        assert sup.child("c") is first
        assert sup.which_children() == [("c", True, 0)]
        sup.request_stop()


async def test_mailbox_is_fifo_for_receive() -> None:
    sup = Supervisor("s", children=[ChildSpec("c", start=Counter, mailbox_capacity=4)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("c")
        for i in range(300):  # far more than the capacity: senders wait, order is kept
            await ref.tell(("echo", i))
        assert await ref.ask(("echo", "last")) == "last"
        actor = sup.child("c")
        assert isinstance(actor, Counter)
        assert actor.seen == [("echo", i) for i in range(300)] + [("echo", "last")]
        sup.request_stop()


class BatchRecorder(Actor):
    max_batch = 7

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    async def receive_batch(self, batch: Sequence[Envelope]) -> None:
        self.batches.append([envelope.message for envelope in batch])
        for envelope in batch:
            if envelope.reply is not None:
                envelope.reply.set(envelope.message)


async def test_receive_batch_sees_messages_in_order() -> None:
    sup = Supervisor("s", children=[ChildSpec("b", start=BatchRecorder, mailbox_capacity=64)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("b")
        for i in range(50):  # queued before the actor wakes: batched
            ref.tell_nowait(i)
        for i in range(50, 200):  # more than the capacity: interleaved with handling
            await ref.tell(i)
        for i in range(200, 210):
            assert await ref.ask(i) == i
        actor = sup.child("b")
        assert isinstance(actor, BatchRecorder)
        assert [m for batch in actor.batches for m in batch] == list(range(210))
        assert all(1 <= len(batch) <= 7 for batch in actor.batches)
        assert actor.batches[0] == list(range(7))  # really batched, up to max_batch
        sup.request_stop()


# -- 2. backpressure ------------------------------------------------------------


async def test_backpressure_bounded_mailbox() -> None:
    gate = trio.Event()
    sup = Supervisor(
        "s", children=[ChildSpec("c", start=lambda: Counter(gate=gate), mailbox_capacity=2)]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("c")
        ref.tell_nowait("hold")
        await settle()  # the actor took "hold" and is blocked in its handler
        assert ref.queued == 0
        ref.tell_nowait(("echo", 1))
        ref.tell_nowait(("echo", 2))
        assert ref.queued == 2
        with pytest.raises(MailboxFull):
            ref.tell_nowait(("echo", 3))

        told = trio.Event()

        async def blocked_tell() -> None:
            await ref.tell(("echo", 3))
            told.set()

        nursery.start_soon(blocked_tell)
        await settle()
        assert not told.is_set()
        assert ref.queued == 2

        gate.set()  # the actor drains, making room
        with trio.fail_after(1):
            await told.wait()
        assert await ref.ask("get") == 0
        actor = sup.child("c")
        assert isinstance(actor, Counter)
        assert actor.seen == ["hold", ("echo", 1), ("echo", 2), ("echo", 3), "get"]
        sup.request_stop()


# -- 3. crash and restart (one_for_one) ---------------------------------------


async def test_crash_restarts_with_fresh_state_and_keeps_queued_messages() -> None:
    gate = trio.Event()
    factory = Factory(lambda: Counter(gate=gate))
    sup = Supervisor("s", children=[ChildSpec("c", start=factory)])
    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("c")
        assert await ref.ask("inc") == 1
        assert await ref.ask("inc") == 2
        first = sup.child("c")

        nursery.start_soon(ask_into, results, "crash", ref, "hold-then-crash")
        await settle()  # the crashing message is being handled
        ref.tell_nowait("inc")  # queued behind the crash
        nursery.start_soon(ask_into, results, "after", ref, "inc")
        await settle()
        assert ref.queued == 2

        gate.set()
        await settle()
        assert isinstance(results["crash"], ActorCrashed)
        assert results["after"] == 2  # fresh state (0), then both queued "inc"s
        second = sup.child("c")
        assert isinstance(first, Counter) and isinstance(second, Counter)
        assert second is not first
        assert factory.instances == [first, second]
        assert second.seen == ["inc", "inc"]
        assert [type(e) for e in first.failures] == [RuntimeError]
        assert sup.which_children() == [("c", True, 1)]
        sup.request_stop()


async def test_messages_behind_a_crash_in_the_same_wakeup_are_not_lost() -> None:
    factory = Factory(Counter)
    sup = Supervisor("s", children=[ChildSpec("c", start=factory)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("c")
        # All queued before the actor runs at all.
        ref.tell_nowait("crash")
        ref.tell_nowait("inc")
        ref.tell_nowait("inc")
        assert await ref.ask("inc") == 3
        assert len(factory.instances) == 2
        assert factory.instances[1].seen == ["inc", "inc", "inc"]
        assert sup.which_children() == [("c", True, 1)]
        sup.request_stop()


class BatchCrasher(BatchRecorder):
    async def receive_batch(self, batch: Sequence[Envelope]) -> None:
        if any(envelope.message == "crash" for envelope in batch):
            raise RuntimeError("batch failed")
        await super().receive_batch(batch)


async def test_the_whole_batch_in_flight_gets_actor_crashed() -> None:
    factory = Factory(BatchCrasher)
    sup = Supervisor("s", children=[ChildSpec("b", start=factory)])
    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("b")
        for key in ("a", "crash", "b"):  # all queued before the actor wakes: one batch
            nursery.start_soon(ask_into, results, key, ref, key)
        await settle()
        assert {key: type(value) for key, value in results.items()} == {
            "a": ActorCrashed,
            "crash": ActorCrashed,
            "b": ActorCrashed,
        }
        assert await ref.ask("next") == "next"
        assert len(factory.instances) == 2
        assert factory.instances[1].batches == [["next"]]
        sup.request_stop()


# -- 4. snapshots ---------------------------------------------------------------


class DictStore:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    async def load_snapshot(self, key: str) -> dict[str, Any] | None:
        state = self.data.get(key)
        return dict(state) if state is not None else None

    async def save_snapshot(self, key: str, state: dict[str, Any]) -> None:
        self.data[key] = dict(state)


class PersistentCounter(Counter):
    snapshot_key = "counter/1"

    def __init__(self, store: DictStore, gate: trio.Event | None = None) -> None:
        super().__init__(gate=gate)
        self.snapshot_store = store

    def snapshot(self) -> dict[str, Any]:
        return {"count": self.count}

    def restore(self, state: dict[str, Any]) -> None:
        self.count = state["count"]

    async def receive(self, message: Any) -> Any:
        result = await super().receive(message)
        if message == "inc":
            await self.persist()
        return result


async def test_snapshot_resumes_after_kill_and_crash() -> None:
    store = DictStore()
    gate = trio.Event()
    factory = Factory(lambda: PersistentCounter(store, gate))
    sup = Supervisor("s", children=[ChildSpec("c", start=factory)])
    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("c")
        for expected in (1, 2, 3):
            assert await ref.ask("inc") == expected
        assert store.data == {"counter/1": {"count": 3}}

        nursery.start_soon(ask_into, results, "held", ref, "hold")
        await settle()
        sup.kill_child("c")
        await settle()
        assert isinstance(results["held"], ActorCrashed)  # in flight when killed
        assert sup.which_children() == [("c", True, 1)]
        assert len(factory.instances) == 2
        assert await ref.ask("get") == 3  # resumed from the snapshot

        with pytest.raises(ActorCrashed):
            await ref.ask("crash")
        assert await ref.ask("get") == 3
        assert await ref.ask("inc") == 4
        assert sup.which_children() == [("c", True, 2)]
        assert len(factory.instances) == 3
        sup.request_stop()

    # A cold start of a new supervisor resumes too.
    sup2 = Supervisor("s2", children=[ChildSpec("c", start=lambda: PersistentCounter(store))])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup2.run)
        assert await sup2.ref("c").ask("get") == 4
        sup2.request_stop()


async def test_without_persistence_a_restart_resets_state() -> None:
    sup = Supervisor("s", children=[ChildSpec("c", start=Counter)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("c")
        assert await ref.ask("inc") == 1
        sup.kill_child("c")
        await settle()
        assert sup.which_children() == [("c", True, 1)]
        assert await ref.ask("get") == 0
        sup.request_stop()


class FailsSecondStart(Counter):
    starts = 0

    async def on_start(self) -> None:
        FailsSecondStart.starts += 1
        if FailsSecondStart.starts == 2:
            raise RuntimeError("cannot start")
        await super().on_start()


async def test_a_restart_that_fails_to_start_counts_as_another_crash() -> None:
    FailsSecondStart.starts = 0
    factory = Factory(FailsSecondStart)
    sup = Supervisor("s", max_restarts=3, children=[ChildSpec("c", start=factory)])
    outcome = Outcome(sup)
    async with trio.open_nursery() as nursery:
        await nursery.start(outcome.run)
        ref = sup.ref("c")
        ref.tell_nowait("crash")
        ref.tell_nowait("inc")  # queued behind the crash: survives both restarts
        await settle()
        assert len(factory.instances) == 3  # crash, failed start, then a good start
        assert sup.which_children() == [("c", True, 2)]
        assert await ref.ask("get") == 1
        assert not outcome.finished.is_set()
        sup.request_stop()
    assert outcome.error is None


# -- 5. restart intensity and escalation --------------------------------------


async def test_too_many_restarts_escalate_out_of_run() -> None:
    journal: list[Any] = []
    factory = Factory(lambda: Counter("c", journal))
    sup = Supervisor(
        "s",
        max_restarts=2,
        within=10,
        children=[
            ChildSpec("other", start=lambda: Counter("other", journal)),
            ChildSpec("c", start=factory),
        ],
    )
    outcome = Outcome(sup)
    async with trio.open_nursery() as nursery:
        await nursery.start(outcome.run)
        ref = sup.ref("c")
        other = sup.ref("other")
        for restarts in (1, 2):
            with pytest.raises(ActorCrashed):
                await ref.ask("crash")
            await settle()
            assert not outcome.finished.is_set()
            assert sup.which_children() == [("other", True, 0), ("c", True, restarts)]
        with pytest.raises(ActorCrashed):
            await ref.ask("crash")
        with trio.fail_after(1):
            await outcome.finished.wait()

    assert isinstance(outcome.error, SupervisorEscalation)
    assert isinstance(outcome.error.__cause__, RuntimeError)
    assert len(factory.instances) == 3
    assert ("stop", "other") in [entry[:2] for entry in journal]  # siblings stopped
    assert sup.which_children() == []
    for child_ref in (ref, other):
        with pytest.raises(ActorStopped):
            child_ref.tell_nowait("inc")
        with pytest.raises(ActorStopped):
            await child_ref.ask("get")


async def test_crashes_spaced_beyond_the_window_do_not_escalate(autojump_clock: Any) -> None:
    sup = Supervisor("s", max_restarts=2, within=10, children=[ChildSpec("c", start=Counter)])
    outcome = Outcome(sup)
    async with trio.open_nursery() as nursery:
        await nursery.start(outcome.run)
        ref = sup.ref("c")
        for _ in range(5):
            with pytest.raises(ActorCrashed):
                await ref.ask("crash")
            await trio.sleep(10.5)
        assert not outcome.finished.is_set()
        assert sup.which_children() == [("c", True, 5)]
        assert await ref.ask("inc") == 1
        sup.request_stop()
    assert outcome.error is None


async def test_restart_window_slides(autojump_clock: Any) -> None:
    sup = Supervisor("s", max_restarts=2, within=10, children=[ChildSpec("c", start=Counter)])
    outcome = Outcome(sup)
    async with trio.open_nursery() as nursery:
        await nursery.start(outcome.run)
        ref = sup.ref("c")
        start = trio.current_time()
        for at in (0, 6, 12):  # never more than two within any 10 s
            await trio.sleep_until(start + at)
            with pytest.raises(ActorCrashed):
                await ref.ask("crash")
            await settle()
        assert not outcome.finished.is_set()
        assert sup.which_children() == [("c", True, 3)]
        await trio.sleep_until(start + 13)  # 6, 12, 13: three within 10 s
        with pytest.raises(ActorCrashed):
            await ref.ask("crash")
        with trio.fail_after(1):
            await outcome.finished.wait()
    assert isinstance(outcome.error, SupervisorEscalation)


async def test_escalating_child_supervisor_is_restarted_by_its_parent() -> None:
    inner_factory = Factory(
        lambda: Supervisor(
            "inner", max_restarts=1, within=10, children=[ChildSpec("w", start=Counter)]
        )
    )
    outer = Supervisor(
        "outer", max_restarts=3, within=10, children=[ChildSpec("inner", start=inner_factory)]
    )
    outcome = Outcome(outer)
    async with trio.open_nursery() as nursery:
        await nursery.start(outcome.run)
        inner1 = outer.child("inner")
        assert isinstance(inner1, Supervisor)
        worker = inner1.ref("w")
        assert await worker.ask("inc") == 1

        with pytest.raises(ActorCrashed):
            await worker.ask("crash")
        await settle()
        assert inner1.which_children() == [("w", True, 1)]
        assert outer.which_children() == [("inner", True, 0)]

        with pytest.raises(ActorCrashed):
            await worker.ask("crash")  # second restart within 10 s: inner escalates
        await settle()
        assert outer.which_children() == [("inner", True, 1)]
        inner2 = outer.child("inner")
        assert isinstance(inner2, Supervisor)
        assert inner2 is not inner1
        assert inner_factory.instances == [inner1, inner2]
        assert inner1.which_children() == []
        with pytest.raises(ActorStopped):
            await worker.ask("get")
        assert inner2.which_children() == [("w", True, 0)]
        assert await inner2.ref("w").ask("inc") == 1
        assert not outcome.finished.is_set()
        outer.request_stop()
    assert outcome.error is None


# -- 5b. backoff: an outage is waited out, not counted -------------------------


class StoreAway(Exception):
    """Stands for the store's outage (the system's backoff is on BackendUnavailable)."""


class Store:
    away = False


class NeedsStore(Counter):
    """Fails to start while its store is away (its start-up read finds the store away)."""

    def __init__(self, store: Store, journal: list[Any]) -> None:
        super().__init__("c", journal)
        self.store = store

    async def on_start(self) -> None:
        await super().on_start()
        if self.store.away:
            raise StoreAway("store away")

    async def receive(self, message: Any) -> Any:
        if message == "store-away":
            raise StoreAway("store away mid-message")
        return await super().receive(message)


@dataclass
class BackoffRun:
    supervisor: Supervisor
    factory: Factory
    outcome: Outcome
    store: Store
    journal: list[Any]


@asynccontextmanager
async def backoff_supervisor_running() -> AsyncIterator[BackoffRun]:
    """A supervisor (2 restarts within 10 s) of one NeedsStore child ``"c"``, with a
    backoff on StoreAway from 0.1 s to 2 s."""
    store, journal = Store(), []
    factory = Factory(lambda: NeedsStore(store, journal))
    supervisor = Supervisor(
        "s",
        max_restarts=2,
        within=10,
        children=[ChildSpec("c", start=factory)],
        backoff=Backoff(on=(StoreAway,), initial=0.1, maximum=2.0),
    )
    run = BackoffRun(supervisor, factory, Outcome(supervisor), store, journal)
    async with trio.open_nursery() as nursery:
        await nursery.start(run.outcome.run)
        yield run


async def test_an_outage_is_waited_out_with_growing_pauses_not_escalated(
    autojump_clock: Any,
) -> None:
    async with backoff_supervisor_running() as run:
        ref = run.supervisor.ref("c")
        run.store.away = True
        with pytest.raises(ActorCrashed):
            await ref.ask("store-away")
        ref.tell_nowait("inc")  # waits in the mailbox through the outage
        await trio.sleep(30)  # far more than max_restarts failed starts within 10 s
        assert not run.outcome.finished.is_set()
        starts = [entry[2] for entry in run.journal if entry[0] == "failed"]
        pauses = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
        assert pauses[:6] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]  # doubling, capped at maximum
        assert set(pauses[6:]) == {2.0}
        run.store.away = False  # the store is back: the next restart starts
        await trio.sleep(2.0)
        assert run.supervisor.which_children()[0][1] is True
        assert await ref.ask("get") == 1  # the message queued before the outage was kept
        run.supervisor.request_stop()
    assert run.outcome.error is None


async def test_other_crashes_still_count_and_escalate_under_a_backoff(
    autojump_clock: Any,
) -> None:
    async with backoff_supervisor_running() as run:
        ref = run.supervisor.ref("c")
        for _ in range(2):
            with pytest.raises(ActorCrashed):
                await ref.ask("crash")
            await settle()
        assert not run.outcome.finished.is_set()
        with pytest.raises(ActorCrashed):
            await ref.ask("crash")
        with trio.fail_after(1):
            await run.outcome.finished.wait()
    assert isinstance(run.outcome.error, SupervisorEscalation)
    assert isinstance(run.outcome.error.__cause__, RuntimeError)


async def test_the_pause_starts_over_after_a_long_enough_run(autojump_clock: Any) -> None:
    async with backoff_supervisor_running() as run:
        ref = run.supervisor.ref("c")
        for _ in range(3):  # pauses 0.1, 0.2, 0.4: each outage ends at once
            with pytest.raises(ActorCrashed):
                await ref.ask("store-away")
            await trio.sleep(0.5)
        assert run.supervisor.which_children() == [("c", True, 3)]
        await trio.sleep(5)  # ran longer than maximum: the next pause is initial again
        failed_at = trio.current_time()
        with pytest.raises(ActorCrashed):
            await ref.ask("store-away")
        await settle()
        assert run.supervisor.which_children() == [("c", False, 3)]
        await trio.sleep(0.1)
        await settle()
        assert run.supervisor.which_children() == [("c", True, 4)]
        assert [kind for kind, *_ in run.journal].count("start") == 5
        assert trio.current_time() - failed_at == pytest.approx(0.1)
        run.supervisor.request_stop()
    assert run.outcome.error is None


async def test_a_child_stopped_during_its_pause_is_not_restarted(autojump_clock: Any) -> None:
    async with backoff_supervisor_running() as run:
        supervisor = run.supervisor
        with pytest.raises(ActorCrashed):
            await supervisor.ref("c").ask("store-away")
        await supervisor.stop_child("c")
        await trio.sleep(1)
        assert supervisor.which_children() == []
        assert len(run.factory.instances) == 1
        d = await supervisor.start_child(ChildSpec("d", start=run.factory))
        run.store.away = True
        with pytest.raises(ActorCrashed):
            await d.ask("store-away")
        supervisor.request_stop()  # during d's pause: it stops without waiting it out
    assert run.outcome.error is None
    assert len(run.factory.instances) == 2


# -- 6. restart types ---------------------------------------------------------


@pytest.mark.parametrize("how", ["crash", "kill"])
async def test_temporary_child_is_never_restarted(how: str) -> None:
    factory = Factory(Counter)
    sup = Supervisor(
        "s",
        children=[
            ChildSpec("keep", start=Counter),
            ChildSpec("t", start=factory, restart=Restart.TEMPORARY),
        ],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("t")
        assert await ref.ask("inc") == 1
        if how == "crash":
            with pytest.raises(ActorCrashed):
                await ref.ask("crash")
        else:
            sup.kill_child("t")
        await settle()
        assert "t" not in sup
        assert sup.which_children() == [("keep", True, 0)]
        assert len(factory.instances) == 1
        with pytest.raises(ActorStopped):
            await ref.ask("get")
        with pytest.raises(ActorStopped):
            await ref.tell("inc")
        with pytest.raises(ActorStopped):
            ref.tell_nowait("inc")
        sup.request_stop()


async def test_transient_actor_restarted_after_abnormal_exit_only() -> None:
    factory = Factory(Counter)
    sup = Supervisor("s", children=[ChildSpec("t", start=factory, restart=Restart.TRANSIENT)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("t")
        with pytest.raises(ActorCrashed):
            await ref.ask("crash")
        await settle()
        assert sup.which_children() == [("t", True, 1)]
        sup.kill_child("t")  # killed is abnormal too
        await settle()
        assert sup.which_children() == [("t", True, 2)]
        assert await ref.ask("inc") == 1

        await sup.stop_child("t")  # a normal stop: not restarted
        await settle()
        assert "t" not in sup
        assert len(factory.instances) == 3
        with pytest.raises(ActorStopped):
            await ref.ask("get")
        sup.request_stop()


def _crashy_inner(name: str) -> Supervisor:
    return Supervisor(name, max_restarts=0, children=[ChildSpec("w", start=Counter)])


async def test_transient_child_supervisor_normal_exit_is_not_restarted() -> None:
    quits = Factory(lambda: _crashy_inner("quits"))
    fails = Factory(lambda: _crashy_inner("fails"))
    outer = Supervisor(
        "outer",
        children=[
            ChildSpec("quits", start=quits, restart=Restart.TRANSIENT),
            ChildSpec("fails", start=fails, restart=Restart.TRANSIENT),
        ],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(outer.run)
        quitting = outer.child("quits")
        assert isinstance(quitting, Supervisor)
        quitting.request_stop()  # run() returns normally: a normal exit
        await settle()
        assert "quits" not in outer
        assert len(quits.instances) == 1

        failing = outer.child("fails")
        assert isinstance(failing, Supervisor)
        with pytest.raises(ActorCrashed):
            await failing.ref("w").ask("crash")  # max_restarts=0: escalates at once
        await settle()
        assert outer.which_children() == [("fails", True, 1)]
        assert len(fails.instances) == 2
        outer.request_stop()


async def test_permanent_child_is_always_restarted() -> None:
    actors = Factory(Counter)
    inners = Factory(lambda: _crashy_inner("inner"))
    outer = Supervisor(
        "outer",
        max_restarts=10,
        children=[ChildSpec("p", start=actors), ChildSpec("inner", start=inners)],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(outer.run)
        with pytest.raises(ActorCrashed):
            await outer.ref("p").ask("crash")
        await settle()
        outer.kill_child("p")
        await settle()
        assert outer.which_children() == [("p", True, 2), ("inner", True, 0)]
        assert len(actors.instances) == 3

        inner = outer.child("inner")
        assert isinstance(inner, Supervisor)
        inner.request_stop()  # a normal exit: permanent children come back anyway
        await settle()
        assert outer.which_children() == [("p", True, 2), ("inner", True, 1)]
        assert len(inners.instances) == 2
        assert outer.child("inner") is inners.instances[1]

        await outer.stop_child("p")  # an explicit stop is final, even for permanent
        await settle()
        assert outer.which_children() == [("inner", True, 1)]
        assert len(actors.instances) == 3
        outer.request_stop()


class GatedStart(Counter):
    """Blocks in ``on_start`` until ``start_gate`` is set (when given one)."""

    def __init__(self, start_gate: trio.Event | None) -> None:
        super().__init__("slow")
        self.start_gate = start_gate

    async def on_start(self) -> None:
        await super().on_start()
        if self.start_gate is not None:
            await self.start_gate.wait()


async def test_stop_child_with_a_pending_crash_is_final() -> None:
    start_gate = trio.Event()
    slow: Factory = Factory(lambda: GatedStart(start_gate if slow.instances else None))
    factory = Factory(Counter)
    sup = Supervisor(
        "s",
        max_restarts=3,
        children=[ChildSpec("slow", start=slow), ChildSpec("c", start=factory)],
    )
    outcome = Outcome(sup)
    async with trio.open_nursery() as nursery:
        await nursery.start(outcome.run)
        ref = sup.ref("c")
        sup.kill_child("slow")
        await settle()  # the supervisor is busy restarting "slow" (blocked in on_start)
        with pytest.raises(ActorCrashed):
            await ref.ask("crash")
        await settle()
        assert sup.which_children() == [("slow", True, 1), ("c", False, 0)]  # crash pending
        await sup.stop_child("c")
        start_gate.set()  # now the supervisor sees the crash of a child it no longer has
        await settle()
        assert sup.which_children() == [("slow", True, 1)]
        assert len(factory.instances) == 1  # not restarted
        assert not outcome.finished.is_set()
        with pytest.raises(ActorStopped):
            await ref.ask("get")
        assert await sup.ref("slow").ask("inc") == 1
        sup.request_stop()
    assert outcome.error is None


# -- 7. strategies --------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "journal_after", "restarts"),
    [
        (Strategy.ONE_FOR_ONE, [("start", "b")], [0, 1, 0, 0]),
        (
            Strategy.ONE_FOR_ALL,
            [
                ("stop", "d"),
                ("stop", "c"),
                ("stop", "a"),
                ("start", "a"),
                ("start", "b"),
                ("start", "c"),
                ("start", "d"),
            ],
            [1, 1, 1, 1],
        ),
        (
            Strategy.REST_FOR_ONE,
            [("stop", "d"), ("stop", "c"), ("start", "b"), ("start", "c"), ("start", "d")],
            [0, 1, 1, 1],
        ),
    ],
)
async def test_strategies(
    strategy: Strategy, journal_after: list[tuple[str, str]], restarts: list[int]
) -> None:
    journal: list[Any] = []
    names = ["a", "b", "c", "d"]
    sup = Supervisor(
        "s",
        strategy=strategy,
        children=[ChildSpec(n, start=lambda n=n: Counter(n, journal)) for n in names],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert journal == [("start", n) for n in names]
        before = {n: sup.child(n) for n in names}
        for n in names:
            assert await sup.ref(n).ask("inc") == 1
        journal.clear()

        with pytest.raises(ActorCrashed):
            await sup.ref("b").ask("crash")
        await settle()

        assert [entry[:2] for entry in journal if entry[0] != "failed"] == journal_after
        assert sup.which_children() == [(n, True, r) for n, r in zip(names, restarts, strict=True)]
        for n, r in zip(names, restarts, strict=True):
            assert (sup.child(n) is before[n]) == (r == 0)
            assert await sup.ref(n).ask("get") == (1 if r == 0 else 0)
        sup.request_stop()


async def test_one_for_all_simultaneous_crashes_restart_once() -> None:
    gate = trio.Event()
    sup = Supervisor(
        "s",
        strategy=Strategy.ONE_FOR_ALL,
        max_restarts=1,
        children=[ChildSpec(n, start=lambda n=n: Counter(n, gate=gate)) for n in ("a", "b")],
    )
    outcome = Outcome(sup)
    async with trio.open_nursery() as nursery:
        await nursery.start(outcome.run)
        sup.ref("a").tell_nowait("hold-then-crash")
        sup.ref("b").tell_nowait("hold-then-crash")
        await settle()
        gate.set()  # both fail together: one restart of the group
        await settle()
        assert not outcome.finished.is_set()
        assert sup.which_children() == [("a", True, 1), ("b", True, 1)]
        assert await sup.ref("a").ask("inc") == 1
        sup.request_stop()
    assert outcome.error is None


# -- 8. orderly shutdown ------------------------------------------------------


async def test_children_start_in_order_and_stop_in_reverse() -> None:
    journal: list[Any] = []

    def inner() -> Supervisor:
        return Supervisor(
            "inner",
            children=[ChildSpec(n, start=lambda n=n: Counter(n, journal)) for n in ("x", "y")],
        )

    sup = Supervisor(
        "s",
        children=[
            ChildSpec("a", start=lambda: Counter("a", journal)),
            ChildSpec("inner", start=inner),
            ChildSpec("c", start=lambda: Counter("c", journal)),
        ],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert journal == [("start", "a"), ("start", "x"), ("start", "y"), ("start", "c")]
        ref = sup.ref("a")
        sup.request_stop()
    assert [entry[:2] for entry in journal[4:]] == [
        ("stop", "c"),
        ("stop", "y"),
        ("stop", "x"),
        ("stop", "a"),
    ]
    assert sup.which_children() == []
    with pytest.raises(ActorStopped):
        await ref.ask("get")


async def test_child_ignoring_stop_is_cancelled_after_its_shutdown_timeout(
    autojump_clock: Any,
) -> None:
    journal: list[Any] = []
    sup = Supervisor(
        "s",
        children=[
            ChildSpec("ok", start=lambda: Counter("ok", journal)),
            ChildSpec("stuck", start=lambda: Counter("stuck", journal), shutdown_timeout=3),
        ],
    )
    outcome = Outcome(sup)
    results: dict[str, Any] = {}
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(outcome.run)
            stuck = sup.ref("stuck")
            stuck_actor = sup.child("stuck")
            assert isinstance(stuck_actor, Counter)
            nursery.start_soon(ask_into, results, "hang", stuck, "hang")
            await settle()
            nursery.start_soon(ask_into, results, "queued", stuck, "get")
            await settle()
            journal.clear()
            start = trio.current_time()
            sup.request_stop()
            await outcome.finished.wait()
            stopped_at = trio.current_time()

    assert stopped_at - start == pytest.approx(3)
    assert outcome.error is None
    # "stuck" (started last) is stopped first, cancelled at its timeout; then "ok".
    assert journal == [
        ("failed", "stuck", pytest.approx(start + 3)),
        ("stop", "ok", pytest.approx(start + 3)),
    ]
    assert [type(e) for e in stuck_actor.failures] == [trio.Cancelled]
    assert isinstance(results["hang"], ActorCrashed)  # in flight when cancelled
    assert isinstance(results["queued"], ActorStopped)  # never handled


async def test_pending_asks_fail_with_actor_stopped_when_supervisor_stops() -> None:
    gate = trio.Event()
    sup = Supervisor(
        "s", children=[ChildSpec("c", start=lambda: Counter(gate=gate), mailbox_capacity=2)]
    )
    outcome = Outcome(sup)
    results: dict[str, Any] = {}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(outcome.run)
            ref = sup.ref("c")
            nursery.start_soon(ask_into, results, "held", ref, "hold")
            await settle()
            for key in ("q1", "q2", "blocked"):  # two fill the mailbox, one waits to enqueue
                nursery.start_soon(ask_into, results, key, ref, "inc")
                await settle()
            assert ref.queued == 2
            sup.request_stop()
            await settle()
            assert results == {}  # waiting for the message in hand (shutdown_timeout 5 s)
            gate.set()
            await outcome.finished.wait()

    assert results["held"] == "released"  # the message in hand is finished
    for key in ("q1", "q2", "blocked"):
        assert isinstance(results[key], ActorStopped), key
    actor = sup.child("c")
    assert actor is None
    with pytest.raises(ActorStopped):
        await ref.ask("get")
    with pytest.raises(ActorStopped):
        await sup.start_child(ChildSpec("late", start=Counter))


async def test_supervisor_cancelled_from_outside_shuts_down_promptly(autojump_clock: Any) -> None:
    journal: list[Any] = []
    gate = trio.Event()
    sup = Supervisor(
        "s",
        children=[
            ChildSpec("a", start=lambda: Counter("a", journal)),
            ChildSpec("b", start=lambda: Counter("b", journal, gate), shutdown_timeout=5),
        ],
    )
    scope = trio.CancelScope()
    finished = trio.Event()
    results: dict[str, Any] = {}

    async def run_in_scope(
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with scope:
            await sup.run(task_status=task_status)
        finished.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(run_in_scope)
        ref = sup.ref("b")
        nursery.start_soon(ask_into, results, "held", ref, "hold")
        await settle()
        nursery.start_soon(ask_into, results, "queued", ref, "inc")
        await settle()
        journal.clear()
        start = trio.current_time()
        scope.cancel()  # e.g. the parent's nursery is cancelled
        await finished.wait()
        assert trio.current_time() - start == pytest.approx(0)  # no shutdown_timeout wait

    assert sorted(entry[:2] for entry in journal) == [("failed", "a"), ("failed", "b")]
    assert isinstance(results["held"], ActorCrashed)
    assert isinstance(results["queued"], ActorStopped)
    assert sup.which_children() == []


# -- 9. ask timeout -------------------------------------------------------------


async def test_ask_timeout_raises_too_slow(autojump_clock: Any) -> None:
    gate = trio.Event()
    sup = Supervisor(
        "s", children=[ChildSpec("c", start=lambda: Counter(gate=gate), mailbox_capacity=1)]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("c")

        start = trio.current_time()
        with pytest.raises(trio.TooSlowError), trio.fail_after(2):
            await ref.ask(("sleep", 5))
        assert trio.current_time() - start == pytest.approx(2)
        with trio.fail_after(10):
            assert await ref.ask("get") == 0  # answered once the slow one is done
        assert trio.current_time() - start == pytest.approx(5)
        assert sup.which_children() == [("c", True, 0)]

        # Timing out while waiting for mailbox space: the message is never enqueued.
        ref.tell_nowait("hold")
        await settle()
        ref.tell_nowait("inc")
        start = trio.current_time()
        with pytest.raises(trio.TooSlowError), trio.fail_after(1):
            await ref.ask("inc")
        assert trio.current_time() - start == pytest.approx(1)
        assert ref.queued == 1
        gate.set()
        with trio.fail_after(1):
            assert await ref.ask("get") == 1
        sup.request_stop()
