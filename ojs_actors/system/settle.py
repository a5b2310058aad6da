"""Outcomes of claimed jobs, as :meth:`System.settle_many` takes them in bulk.

An :class:`Ack` completes a job (with an optional result), a :class:`Nack` reports a
failed attempt (the retry policy decides retryable or discarded) or, with
``requeue``, hands the job back without spending the attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core import NO_RESULT, lifecycle, parse_error_report
from .transitions import Transition, ack_with, fail_with


@dataclass(frozen=True, slots=True)
class Ack:
    job_id: str
    result: Any = NO_RESULT
    """``NO_RESULT`` (the default) stores no result; ``None`` stores JSON null."""


@dataclass(frozen=True, slots=True)
class Nack:
    job_id: str
    error: dict[str, Any] | None = None
    """The error report (``code``, ``type``, ``message``, ``retryable``, ``details``)."""
    requeue: bool = False


Outcome = Ack | Nack


def transition_of(outcome: Outcome) -> Transition:
    """The lifecycle transition an outcome asks for; raises ``InvalidRequest`` for a
    malformed error report."""
    if isinstance(outcome, Ack):
        return ack_with(outcome.result)
    if outcome.requeue:
        return lifecycle.requeue
    return fail_with(parse_error_report(outcome.error))


__all__ = ["Ack", "Nack", "Outcome", "transition_of"]
