"""The circuit breaker (backends/breaker.py) on trio's autojump clock: fail fast once a
store stops answering, cancel the calls in flight, one probe after the cool-down."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from ojs_actors.backends.breaker import CircuitBreaker, CircuitState, NoAnswer
from ojs_actors.core import BackendUnavailable

COOLDOWN = 1.0


async def answer(breaker: CircuitBreaker, seconds: float = 0.0) -> str:
    with breaker.call("get"):
        await trio.sleep(seconds)
        return "answer"


async def no_answer(breaker: CircuitBreaker, after: float = 0.0) -> None:
    with breaker.call("get"):
        await trio.sleep(after)
        raise NoAnswer("no answer in time")


async def test_a_call_without_answer_opens_the_circuit_and_others_fail_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = CircuitBreaker("store", cooldown=COOLDOWN)
    assert await answer(breaker) == "answer"
    with pytest.raises(NoAnswer):
        await no_answer(breaker)
    assert breaker.state is CircuitState.OPEN
    assert breaker.trips == 1
    started = trio.current_time()
    with pytest.raises(NoAnswer, match="not answering"):
        await answer(breaker, seconds=5)
    assert trio.current_time() == started, "an open circuit fails without waiting"


async def test_opening_cancels_the_calls_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = CircuitBreaker("store", cooldown=COOLDOWN)
    failed: list[float] = []

    async def hanging() -> None:
        with pytest.raises(NoAnswer, match="stopped answering"):
            await answer(breaker, seconds=60)
        failed.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(hanging)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(NoAnswer):
            await no_answer(breaker, after=2)
    assert failed == [2.0, 2.0, 2.0], "cancelled when the circuit opened, not after 60 s"


async def test_one_probe_after_the_cooldown_closes_the_circuit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = CircuitBreaker("store", cooldown=COOLDOWN)
    with pytest.raises(NoAnswer):
        await no_answer(breaker)
    await trio.sleep(COOLDOWN)
    assert breaker.state is CircuitState.HALF_OPEN
    others: list[str] = []

    async def other() -> None:
        try:
            others.append(await answer(breaker))
        except NoAnswer:
            others.append("failed at once")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer, breaker, 0.5)  # the probe
        await trio.sleep(0.1)
        nursery.start_soon(other)
    assert others == ["failed at once"], "only one probe at a time"
    assert breaker.state is CircuitState.CLOSED
    assert await answer(breaker) == "answer"
    assert breaker.trips == 1


async def test_a_failed_probe_opens_the_circuit_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = CircuitBreaker("store", cooldown=COOLDOWN)
    with pytest.raises(NoAnswer):
        await no_answer(breaker)
    await trio.sleep(COOLDOWN)
    with pytest.raises(NoAnswer):
        await no_answer(breaker, after=0.2)
    assert breaker.state is CircuitState.OPEN
    await trio.sleep(COOLDOWN)
    assert await answer(breaker) == "answer"
    assert breaker.state is CircuitState.CLOSED


async def test_an_error_answer_is_an_answer(autojump_clock: trio.testing.MockClock) -> None:
    breaker = CircuitBreaker("store", cooldown=COOLDOWN)
    for refused in (ValueError("condition refused"), BackendUnavailable("throttled")):
        with pytest.raises(type(refused)), breaker.call("put"):
            raise refused
        assert breaker.state is CircuitState.CLOSED
    with pytest.raises(NoAnswer):
        await no_answer(breaker)
    await trio.sleep(COOLDOWN)
    with pytest.raises(ValueError), breaker.call("put"):
        raise ValueError("condition refused")
    assert breaker.state is CircuitState.CLOSED, "the probe got an answer"


async def test_a_call_that_may_not_probe_fails_while_half_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = CircuitBreaker("store", cooldown=COOLDOWN)
    with pytest.raises(NoAnswer):
        await no_answer(breaker)
    await trio.sleep(COOLDOWN)
    with pytest.raises(NoAnswer), breaker.call("receive_message", may_probe=False):
        pass
    assert breaker.state is CircuitState.HALF_OPEN


async def test_the_callers_own_cancellation_leaves_the_circuit_as_it_was(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = CircuitBreaker("store", cooldown=COOLDOWN)
    with pytest.raises(NoAnswer):
        await no_answer(breaker)
    await trio.sleep(COOLDOWN)
    with trio.move_on_after(0.1):
        await answer(breaker, seconds=5)  # the probe, cancelled by its caller
    assert breaker.state is CircuitState.HALF_OPEN, "no answer yet: not closed"
    assert await answer(breaker) == "answer", "the next call may probe"
