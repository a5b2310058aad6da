"""The runtime's small exception set."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class ActorError(Exception):
    """Base of every runtime error."""


class ActorCrashed(ActorError):
    """The actor failed while handling this message; it is being restarted."""


class ActorStopped(ActorError):
    """The actor is stopped for good; the message was not handled."""


class MailboxFull(ActorError):
    """``tell_nowait`` found the bounded mailbox full."""


class SupervisorEscalation(ActorError):
    """A supervisor exceeded its restart intensity and gave up (OTP: it exits)."""


@contextmanager
def single_error() -> Iterator[None]:
    """Re-raise a one-member exception group (from a nursery) as its sole member."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from group.exceptions[0].__cause__
        raise
