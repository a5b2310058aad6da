"""A circuit breaker: once a store stops answering, calls fail at once instead of each
waiting out its own deadline.

Without it, requests queued behind a hanging call (an actor's mailbox, a pool's
connections) each wait the full deadline of every call ahead of them, so an outage of
seconds turns into answers that take minutes. With it:

* **closed** (the store answers): calls go through. A call that gets *no answer* (its
  deadline passed, the connection failed: the caller says so by raising
  :class:`NoAnswer` from inside :meth:`CircuitBreaker.call`) opens the circuit and
  cancels every call still in flight, which fail with :class:`NoAnswer` too.
* **open**: every call fails at once with :class:`NoAnswer` (a
  :class:`~ojs_actors.core.BackendUnavailable`: HTTP 503), for ``cooldown`` seconds.
* **half-open**: after the cool-down one call (the *probe*) goes through; the others
  still fail at once. The probe's answer closes the circuit; its failure opens it again
  for another cool-down.

An answer that is an error (a refused condition, throttling) is an answer: it closes
the circuit after a probe and leaves a closed one closed. The breaker does no I/O; it reads ``trio.current_time()``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from ..core import BackendUnavailable


class NoAnswer(BackendUnavailable):
    """The store did not answer (no reply in time, no connection), or the circuit is open."""


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(self, name: str, cooldown: float = 1.0) -> None:
        """``name``: the store, in the errors' messages; ``cooldown``: seconds the circuit
        stays open before a probe may try the store again."""
        self.name = name
        self.cooldown = cooldown
        self.trips = 0
        """Times the circuit opened (a counter for metrics and tests)."""
        self._opened_at: float | None = None
        self._probing = False
        self._in_flight: set[trio.CancelScope] = set()

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._probing or trio.current_time() - self._opened_at >= self.cooldown:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    @contextmanager
    def call(self, operation: str, *, may_probe: bool = True) -> Iterator[None]:
        """Around one call of ``operation``. Raises :class:`NoAnswer` at once while
        the circuit is open (or half-open with a probe already out, or if ``may_probe`` is
        false: a long poll, which would hold the probe for its whole wait)."""
        probe = self._admit(operation, may_probe)
        scope = trio.CancelScope()
        self._in_flight.add(scope)
        try:
            with scope:
                yield
        except NoAnswer:
            self._trip()
            raise
        except Exception:
            self._answered(probe)
            raise
        finally:
            self._in_flight.discard(scope)
            if probe:
                self._probing = False
        if scope.cancelled_caught:
            raise NoAnswer(f"{self.name} {operation}: {self.name} stopped answering")
        self._answered(probe)

    def _admit(self, operation: str, may_probe: bool) -> bool:
        """Whether this call is the probe; raises if it may not go at all."""
        state = self.state
        if state is CircuitState.CLOSED:
            return False
        if state is CircuitState.HALF_OPEN and may_probe and not self._probing:
            self._probing = True
            return True
        raise NoAnswer(f"{self.name} {operation}: {self.name} is not answering")

    def _answered(self, probe: bool) -> None:
        if probe:
            self._opened_at = None

    def _trip(self) -> None:
        if self._opened_at is None:
            self.trips += 1
        self._opened_at = trio.current_time()
        for scope in self._in_flight:
            scope.cancel()


__all__ = ["CircuitBreaker", "CircuitState", "NoAnswer"]
