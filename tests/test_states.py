"""The closed transition table of ojs-core §6.3, checked exhaustively over State x Event."""

from __future__ import annotations

import itertools

import pytest

from ojs_actors.core.errors import Conflict
from ojs_actors.core.states import TERMINAL, TRANSITIONS, Event, State, check_transition

# Every edge of ojs-core §6.3 (the *(initial)* PUSH rows are handled by parse_enqueue).
SPEC_EDGES: dict[tuple[State, Event], State] = {
    (State.SCHEDULED, Event.PROMOTE): State.AVAILABLE,  # Timer: scheduled_at <= now
    (State.PENDING, Event.ACTIVATE): State.AVAILABLE,
    (State.AVAILABLE, Event.FETCH): State.ACTIVE,
    (State.ACTIVE, Event.ACK): State.COMPLETED,
    (State.ACTIVE, Event.FAIL_RETRY): State.RETRYABLE,
    (State.ACTIVE, Event.FAIL_DISCARD): State.DISCARDED,
    (State.ACTIVE, Event.CANCEL): State.CANCELLED,
    (State.ACTIVE, Event.LEASE_EXPIRED): State.AVAILABLE,  # visibility timeout
    (State.RETRYABLE, Event.PROMOTE): State.AVAILABLE,  # Timer: backoff elapsed
    (State.SCHEDULED, Event.CANCEL): State.CANCELLED,
    (State.AVAILABLE, Event.CANCEL): State.CANCELLED,
    (State.PENDING, Event.CANCEL): State.CANCELLED,
    (State.RETRYABLE, Event.CANCEL): State.CANCELLED,
    (State.DISCARDED, Event.MANUAL_RETRY): State.AVAILABLE,
}

# Edges the implementation adds on top of the §6.3 table, each landing in a state the
# table already reaches from the same source: a worker handing a job back unprocessed
# (like the visibility timeout edge) and expires_at passing before the job started
# (ojs-core §5.2 `expires_at`: "MUST transition the job to discarded"). One more, of
# ojs-rate-limiting §6.2 `on_limit: "reschedule"`: "The job is moved to `scheduled`".
EXTENSION_EDGES: dict[tuple[State, Event], State] = {
    (State.AVAILABLE, Event.RESCHEDULE): State.SCHEDULED,
    (State.ACTIVE, Event.REQUEUE): State.AVAILABLE,
    (State.SCHEDULED, Event.EXPIRE): State.DISCARDED,
    (State.AVAILABLE, Event.EXPIRE): State.DISCARDED,
    (State.PENDING, Event.EXPIRE): State.DISCARDED,
    (State.RETRYABLE, Event.EXPIRE): State.DISCARDED,
}

LEGAL = {**SPEC_EDGES, **EXTENSION_EDGES}
ALL_PAIRS = list(itertools.product(State, Event))
ILLEGAL_PAIRS = [pair for pair in ALL_PAIRS if pair not in LEGAL]


def test_there_are_exactly_eight_states() -> None:
    assert {s.value for s in State} == {
        "scheduled",
        "available",
        "pending",
        "active",
        "completed",
        "retryable",
        "cancelled",
        "discarded",
    }


def test_terminal_states() -> None:
    assert TERMINAL == {State.COMPLETED, State.CANCELLED, State.DISCARDED}
    for state in State:
        assert state.terminal is (state in {State.COMPLETED, State.CANCELLED, State.DISCARDED})


def test_table_is_exactly_the_spec_edges_plus_documented_extensions() -> None:
    assert TRANSITIONS == LEGAL


def test_every_spec_edge_is_in_the_table() -> None:
    for pair, target in SPEC_EDGES.items():
        assert TRANSITIONS.get(pair) is target, pair


@pytest.mark.parametrize(("current", "event"), list(LEGAL), ids=lambda v: str(v))
def test_legal_edge_returns_its_target(current: State, event: Event) -> None:
    assert check_transition(current, event, "job-1") is LEGAL[(current, event)]


@pytest.mark.parametrize(("current", "event"), ILLEGAL_PAIRS, ids=lambda v: str(v))
def test_every_pair_outside_the_table_raises_conflict(current: State, event: Event) -> None:
    with pytest.raises(Conflict) as info:
        check_transition(current, event, "job-1")
    err = info.value
    assert err.status == 409
    assert err.code == "conflict"
    assert err.retryable is False
    assert err.details == {
        "job_id": "job-1",
        "current_state": current.value,
        "operation": event.value,
    }
    assert current.value in err.message
    assert event.value in err.message


def test_exhaustive_partition_covers_the_whole_product() -> None:
    assert len(ALL_PAIRS) == len(State) * len(Event)
    assert len(ILLEGAL_PAIRS) + len(LEGAL) == len(ALL_PAIRS)
    legal_seen = 0
    for current, event in ALL_PAIRS:
        try:
            target = check_transition(current, event)
        except Conflict:
            assert (current, event) not in LEGAL
        else:
            legal_seen += 1
            assert target is LEGAL[(current, event)]
    assert legal_seen == len(LEGAL)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_have_no_outgoing_edges_except_manual_retry(terminal: State) -> None:
    outgoing = {event for (state, event) in TRANSITIONS if state is terminal}
    if terminal is State.DISCARDED:
        assert outgoing == {Event.MANUAL_RETRY}
        assert check_transition(terminal, Event.MANUAL_RETRY) is State.AVAILABLE
    else:
        assert outgoing == set()
    for event in Event:
        if (terminal, event) == (State.DISCARDED, Event.MANUAL_RETRY):
            continue
        with pytest.raises(Conflict):
            check_transition(terminal, event)


def test_manual_retry_only_from_discarded() -> None:
    for state in State:
        if state is State.DISCARDED:
            continue
        with pytest.raises(Conflict):
            check_transition(state, Event.MANUAL_RETRY)


@pytest.mark.parametrize(
    ("source", "forbidden_target"),
    [
        (State.AVAILABLE, State.COMPLETED),
        (State.DISCARDED, State.ACTIVE),
        (State.SCHEDULED, State.ACTIVE),
        (State.RETRYABLE, State.ACTIVE),
        (State.PENDING, State.ACTIVE),
    ],
)
def test_invalid_examples_of_section_6_4_are_unreachable(
    source: State, forbidden_target: State
) -> None:
    for event in Event:
        assert TRANSITIONS.get((source, event)) is not forbidden_target


def test_only_available_leads_to_active_and_only_active_leads_to_completed() -> None:
    assert {s for (s, _), t in TRANSITIONS.items() if t is State.ACTIVE} == {State.AVAILABLE}
    assert {s for (s, _), t in TRANSITIONS.items() if t is State.COMPLETED} == {State.ACTIVE}
    assert {s for (s, _), t in TRANSITIONS.items() if t is State.RETRYABLE} == {State.ACTIVE}


def test_every_non_terminal_state_can_be_cancelled() -> None:
    for state in State:
        if state.terminal:
            continue
        assert check_transition(state, Event.CANCEL) is State.CANCELLED


def test_conflict_message_without_job_id_has_no_double_space() -> None:
    with pytest.raises(Conflict) as info:
        check_transition(State.COMPLETED, Event.ACK)
    assert "  " not in info.value.message
    assert info.value.message == "Cannot ack job in state 'completed'."
    assert info.value.details["job_id"] == ""


def test_conflict_renders_on_the_wire() -> None:
    with pytest.raises(Conflict) as info:
        check_transition(State.CANCELLED, Event.CANCEL, "abc")
    wire = info.value.to_wire(request_id="req-1")["error"]
    assert wire["code"] == "conflict"
    assert wire["type"] == "conflict"
    assert wire["retryable"] is False
    assert wire["request_id"] == "req-1"
    assert wire["details"]["current_state"] == "cancelled"
    assert wire["docs_url"].endswith("ojs-core#6-job-lifecycle-state-machine")
