"""Bounded queues' figures (ojs-backpressure §10.2), from this process's
:class:`~ojs_actors.system.backpressure.PressureBoard`, ``queue`` label:
``ojs_backpressure_rejected_total`` (enqueues this process refused at a bound),
``ojs_backpressure_dropped_total`` (jobs it dropped under ``drop_oldest``) and
``ojs_backpressure_pressure`` (each bounded queue's depth, or size, over its bound as this
process last counted it, 0.0 to 1.0)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from ..backpressure import PressureBoard
from .families import counter, gauge


def backpressure_families(board: PressureBoard | None) -> Iterator[Metric]:
    if board is None:
        return
    yield counter("ojs_backpressure_rejected", "Enqueues refused at a queue's bound.",
                  ["queue"], [([queue], n) for queue, n in sorted(board.rejected.items())])  # fmt: skip
    yield counter("ojs_backpressure_dropped", "Jobs dropped to make room (drop_oldest).",
                  ["queue"], [([queue], n) for queue, n in sorted(board.dropped.items())])  # fmt: skip
    yield gauge("ojs_backpressure_pressure", "A bounded queue's depth over its bound (0-1).",
                ["queue"], [([queue], fill) for queue, fill in sorted(board.pressures().items())])  # fmt: skip


__all__ = ["backpressure_families"]
