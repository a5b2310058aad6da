"""Prometheus metrics of one System (prometheus-client), as ``GET /metrics`` exposes them.

Each System has its own registry (two systems in one process never mix their figures;
with several replicas each exposes its own), with the standard process, platform and
garbage-collector collectors and these parts:

* :mod:`.job_flow`: job transitions counted where this process stores them, the time
  jobs wait and run, and the jobs by queue and state (read from the backend at scrape);
* :mod:`.backend_calls`: the latency and errors of every backend call the System makes;
* :mod:`.actors`: mailbox depths and restarts in the supervision tree;
* :mod:`.http_requests`: HTTP requests by route template and status, recorded by the
  ASGI wrapper :mod:`ojs_actors.http.metrics`;
* :mod:`.relay`: the event relay's figures (backends with an event sink);
* :mod:`.backpressure`: bounded queues' refusals, drops and pressure (ojs-backpressure).

Figures that need the backend are read in :meth:`SystemMetrics.refresh`, asynchronously,
before each exposition, so ``collect()`` itself does no I/O. README.md ("Metrics") lists
every metric. ``Settings.metrics = False`` (``OJS_METRICS_ENABLED=false``) turns them all
off: nothing is recorded on any path and ``GET /metrics`` answers 404.
"""

from .system_metrics import CONTENT_TYPE, SystemMetrics

__all__ = ["CONTENT_TYPE", "SystemMetrics"]
