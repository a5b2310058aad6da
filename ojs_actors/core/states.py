"""The eight job states and the closed transition table of ojs-core §6.3.

Every state change in the system goes through :func:`check_transition`, so an
illegal transition is an error everywhere, whichever code path attempts it.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import Conflict


class State(StrEnum):
    SCHEDULED = "scheduled"
    AVAILABLE = "available"
    PENDING = "pending"
    ACTIVE = "active"
    COMPLETED = "completed"
    RETRYABLE = "retryable"
    CANCELLED = "cancelled"
    DISCARDED = "discarded"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


class Event(StrEnum):
    PROMOTE = "promote"  # scheduled_at reached / retry backoff elapsed
    ACTIVATE = "activate"
    FETCH = "fetch"
    ACK = "ack"
    FAIL_RETRY = "fail_retry"
    FAIL_DISCARD = "fail_discard"
    CANCEL = "cancel"
    LEASE_EXPIRED = "lease_expired"  # visibility timeout passed without ack or nack
    REQUEUE = "requeue"  # the worker handed the job back (nack with requeue)
    EXPIRE = "expire"  # expires_at passed before the job started
    MANUAL_RETRY = "manual_retry"  # dead-letter retry
    RESCHEDULE = "reschedule"  # its rate-limit key refused it (on_limit "reschedule")


TERMINAL = frozenset({State.COMPLETED, State.CANCELLED, State.DISCARDED})

TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.SCHEDULED, Event.PROMOTE): State.AVAILABLE,
    (State.RETRYABLE, Event.PROMOTE): State.AVAILABLE,
    (State.PENDING, Event.ACTIVATE): State.AVAILABLE,
    (State.AVAILABLE, Event.FETCH): State.ACTIVE,
    (State.ACTIVE, Event.ACK): State.COMPLETED,
    (State.ACTIVE, Event.FAIL_RETRY): State.RETRYABLE,
    (State.ACTIVE, Event.FAIL_DISCARD): State.DISCARDED,
    (State.ACTIVE, Event.LEASE_EXPIRED): State.AVAILABLE,
    (State.ACTIVE, Event.REQUEUE): State.AVAILABLE,
    (State.SCHEDULED, Event.CANCEL): State.CANCELLED,
    (State.AVAILABLE, Event.CANCEL): State.CANCELLED,
    (State.PENDING, Event.CANCEL): State.CANCELLED,
    (State.ACTIVE, Event.CANCEL): State.CANCELLED,
    (State.RETRYABLE, Event.CANCEL): State.CANCELLED,
    (State.SCHEDULED, Event.EXPIRE): State.DISCARDED,
    (State.AVAILABLE, Event.EXPIRE): State.DISCARDED,
    (State.RETRYABLE, Event.EXPIRE): State.DISCARDED,
    (State.PENDING, Event.EXPIRE): State.DISCARDED,
    (State.DISCARDED, Event.MANUAL_RETRY): State.AVAILABLE,
    (State.AVAILABLE, Event.RESCHEDULE): State.SCHEDULED,
}


def check_transition(current: State, event: Event, job_id: str = "") -> State:
    """The state ``event`` leads to from ``current``; :class:`Conflict` if the table has no such edge."""
    target = TRANSITIONS.get((current, event))
    if target is None:
        raise Conflict(
            f"Cannot {event.value} job {job_id or ''} in state '{current.value}'.".replace(
                "  ", " "
            ),
            details={"job_id": job_id, "current_state": current.value, "operation": event.value},
        )
    return target
