"""Serve the app with Hypercorn inside the actor system's lifetime."""

from __future__ import annotations

import gc
import ipaddress
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from ..system import Settings, chaos_hook, open_system
from ..system.tracing import TracingSettings, open_tracing
from . import workers
from .app import HttpSettings, create_app

log = logging.getLogger("ojs_actors.serve")

DEFAULT_SHUTDOWN_TIMEOUT = 30.0
"""ojs-graceful-shutdown §9.2's default grace period for in-flight requests."""
WEBSOCKET_PING_INTERVAL = 30.0
"""Seconds between the pings Hypercorn sends on each WebSocket (ojs-realtime §3.5: idle
connections through proxies and load balancers stay open, dead peers are noticed)."""

GC_YOUNG_THRESHOLD = 50_000
"""Allocations between young-generation collections (CPython's default is 700). Every job
a server holds keeps a few container objects alive, so with the default the collector
keeps rescanning the growing heap: a quarter of the CPU and pauses of 100 ms and more
under enqueue load. Fewer, larger young collections keep it to about 1 %."""


@dataclass(slots=True)
class ServeConfig:
    backend: str = "memory"
    backend_options: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8080
    http: HttpSettings = field(default_factory=HttpSettings)
    system: Settings = field(default_factory=Settings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    """OpenTelemetry tracing, off by default (:mod:`ojs_actors.system.tracing`)."""
    access_log: bool = False
    allow_insecure_no_auth: bool = False
    """Serve a non-loopback address without an API key (``OJS_ALLOW_INSECURE_NO_AUTH``)."""
    listen_fd: int | None = None
    """Serve this inherited listening socket instead of binding ``host:port`` (a worker
    process of ``serve --workers N``, see :mod:`ojs_actors.http.workers`)."""
    parent_fd: int | None = None
    """Shut down, as on SIGTERM, when this pipe reads end-of-file (the supervising
    process of ``serve --workers N`` is gone)."""
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    """Seconds in-flight requests get to finish after SIGTERM/SIGINT before they are cut
    (ojs-graceful-shutdown §9.2 ``server_shutdown_timeout``); the actors stop after them."""


class InsecureBinding(ValueError):
    """Refused to serve a non-loopback address without authentication."""


def check_exposure(config: ServeConfig) -> None:
    """Without an API key, serve only on loopback, unless told explicitly that it is fine."""
    if config.http.api_keys or config.allow_insecure_no_auth or _is_loopback(config.host):
        return
    raise InsecureBinding(
        f"Refusing to serve {config.host}:{config.port} without authentication: anyone who "
        "can reach it could enqueue, cancel and read jobs. Set OJS_API_KEY (one key, or "
        "several separated by commas), bind a loopback address (--host 127.0.0.1), or set "
        "OJS_ALLOW_INSECURE_NO_AUTH=true if a proxy in front of this server authenticates."
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


async def serve(
    config: ServeConfig, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Open the system, serve HTTP until SIGINT/SIGTERM (or cancellation), then stop in order
    (ojs-graceful-shutdown §9.1): no new connections; waiting fetches answer at once (with
    what they have); in-flight requests get ``config.shutdown_timeout`` seconds to finish,
    then are cut; then the actors stop (supervisors in reverse start order, each draining
    its mailbox) and the backend closes. Raises :class:`InsecureBinding` before opening
    anything if the binding is unsafe."""
    from ..backends import create_backend

    check_exposure(config)

    backend = create_backend(config.backend, **config.backend_options)
    async with open_tracing(config.tracing), open_system(backend, settings=config.system) as system:
        app = create_app(system, config.http)
        _tune_garbage_collector()
        hyper = HypercornConfig()
        if config.listen_fd is None:
            hyper.bind = [f"{config.host}:{config.port}"]
        else:
            hyper.bind = [f"fd://{config.listen_fd}"]
        hyper.accesslog = "-" if config.access_log else None
        hyper.errorlog = logging.getLogger("hypercorn.error")
        hyper.graceful_timeout = config.shutdown_timeout
        hyper.websocket_ping_interval = WEBSOCKET_PING_INTERVAL
        shutdown = trio.Event()

        watchers = trio.CancelScope()
        """What watches for a reason to shut down, cancelled once shutting down."""

        async def wait_for_parent_exit(fd: int) -> None:
            await workers.wait_for_parent_exit(fd)
            log.warning("the supervising process is gone, shutting down")
            shutdown.set()

        async def watch_for_shutdown(
            *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        ) -> None:
            with watchers, trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with trio.open_nursery() as watching:
                    if config.parent_fd is not None:
                        watching.start_soon(wait_for_parent_exit, config.parent_fd)
                    if chaos_hook.enabled():
                        await watching.start(chaos_hook.kill_on_signal, system)
                    task_status.started()  # SIGINT and SIGTERM are ours before serving
                    async for signum in signals:
                        log.info("received %s, shutting down", signal.Signals(signum).name)
                        shutdown.set()
                        break

        async with trio.open_nursery() as nursery:
            await nursery.start(watch_for_shutdown)
            binds = await nursery.start(
                lambda task_status: hypercorn_serve(
                    app, hyper, shutdown_trigger=shutdown.wait, task_status=task_status
                )
            )
            log.info(
                "ojs-actors serving on %s (backend: %s, authentication: %s)",
                ", ".join(binds),
                backend.name,
                "API key" if config.http.api_keys else "none",
            )
            task_status.started(binds)
            await shutdown.wait()
            system.close_fetches()
            watchers.cancel()
            nursery.cancel_scope.deadline = trio.current_time() + hyper.graceful_timeout + 1


def _tune_garbage_collector() -> None:
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
    gc.freeze()  # what start-up built lives as long as the process: no need to rescan it
