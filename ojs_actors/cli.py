"""``ojs-actors serve``, ``ojs-actors worker`` and ``ojs-actors aws-setup``: the command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import trio

from .backends import REGISTRY, MissingExtra
from .backends.options import argparse_type, parse_bool, positive_float, positive_int
from .core import OJSError
from .http import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    HttpSettings,
    InsecureBinding,
    ServeConfig,
    serve,
)
from .http.serve import DEFAULT_SHUTDOWN_TIMEOUT, check_exposure
from .http.workers import STOP_MARGIN, WorkerPlan, run_workers
from .library import add_worker_arguments, worker_command
from .system import Settings
from .system.event_stream import StreamSettings
from .system.schemas import VALIDATION_MODES
from .system.tenant_config import load_static
from .system.tracing import TracingSettings

_DEFAULTS = Settings()
_STREAM = StreamSettings()


def _env_flag(name: str, default: bool) -> bool:
    """An on/off environment variable (as :func:`parse_bool` reads it); ``default`` when it
    is unset, empty or neither."""
    text = os.environ.get(name, "")
    if not text.strip():
        return default
    try:
        return parse_bool(text)
    except ValueError:
        return default


def _webhook_hosts() -> tuple[str, ...]:
    """``OJS_WEBHOOK_ALLOWED_HOSTS``: the hosts webhook subscriptions may target, separated
    by commas (``*.example.com``: its subdomains); unset or empty: any host."""
    hosts = os.environ.get("OJS_WEBHOOK_ALLOWED_HOSTS", "").split(",")
    return tuple(host.strip() for host in hosts if host.strip())


def _env_positive(name: str, setting: str) -> int:
    """A positive integer from the environment variable ``name``, else ``setting``'s default."""
    text = os.environ.get(name)
    return positive_int(text) if text is not None else int(getattr(_DEFAULTS, setting))


def _api_keys() -> tuple[str, ...]:
    """``OJS_API_KEY``: one key, or several separated by commas (to rotate without downtime).
    Read from the environment only, so keys never show in a process listing."""
    return tuple(key.strip() for key in os.environ.get("OJS_API_KEY", "").split(",") if key.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ojs-actors", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the OJS HTTP API")
    REGISTRY.add_arguments(run)
    run.add_argument(
        "--host",
        default=os.environ.get("OJS_HOST", "127.0.0.1"),
        help="bind address (env OJS_HOST)",
    )
    run.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("OJS_PORT", "8080")),
        help="port (env OJS_PORT)",
    )
    run.add_argument(
        "--allow-reset",
        action="store_true",
        default=_env_flag("OJS_ALLOW_RESET", False),
        help="enable POST /ojs/v1/admin/reset and the conformance test hooks (env OJS_ALLOW_RESET)",
    )
    run.add_argument(
        "--max-body-bytes",
        type=int,
        default=int(os.environ.get("OJS_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES))),
        help="largest accepted request body (env OJS_MAX_BODY_BYTES; default 1 MiB)",
    )
    run.add_argument(
        "--poll-interval",
        type=float,
        default=float(os.environ.get("OJS_POLL_INTERVAL", "1.0")),
        help="seconds between backend polls by timers and waiting fetches (env OJS_POLL_INTERVAL)",
    )
    run.add_argument(
        "--workflow-retention",
        type=float,
        default=float(os.environ.get("OJS_WORKFLOW_RETENTION", str(_DEFAULTS.workflow_retention))),
        help="seconds a finished workflow stays readable before it is deleted "
        "(env OJS_WORKFLOW_RETENTION; default 86400)",
    )
    run.add_argument(
        "--worker-idle-timeout",
        type=float,
        default=float(
            os.environ.get("OJS_WORKER_IDLE_TIMEOUT", str(_DEFAULTS.worker_idle_timeout))
        ),
        help="seconds after a worker's last fetch or heartbeat when it is forgotten, with "
        "any directive waiting for it (env OJS_WORKER_IDLE_TIMEOUT; default 300)",
    )
    run.add_argument(
        "--request-timeout",
        type=float,
        default=float(os.environ.get("OJS_REQUEST_TIMEOUT", str(DEFAULT_REQUEST_TIMEOUT))),
        help="seconds a request may take before a retryable 503 (a waiting fetch adds its "
        "wait_ms) (env OJS_REQUEST_TIMEOUT; default 30)",
    )
    run.add_argument(
        "--stream-buffer-size",
        type=argparse_type(positive_int),
        default=os.environ.get("OJS_STREAM_BUFFER_SIZE", str(_STREAM.buffer_size)),
        help="events buffered for each live stream client (SSE, WebSocket) before it counts "
        "as slow (env OJS_STREAM_BUFFER_SIZE; default 1000)",
    )
    run.add_argument(
        "--stream-stall-timeout",
        type=argparse_type(positive_float),
        default=os.environ.get("OJS_STREAM_STALL_TIMEOUT", str(_STREAM.stall_timeout)),
        help="seconds a live stream client's buffer may stay full before the client is "
        "dropped with a reason (env OJS_STREAM_STALL_TIMEOUT; default 30)",
    )
    run.add_argument(
        "--shutdown-timeout",
        type=float,
        default=float(os.environ.get("OJS_SHUTDOWN_TIMEOUT", str(DEFAULT_SHUTDOWN_TIMEOUT))),
        help="seconds in-flight requests get to finish after SIGTERM/SIGINT before they are "
        "cut and the actors stop (env OJS_SHUTDOWN_TIMEOUT; default 30)",
    )
    run.add_argument(
        "--schema-validation",
        choices=VALIDATION_MODES,
        default=os.environ.get("OJS_SCHEMA_VALIDATION", _DEFAULTS.schema_validation),
        help="jobs whose args do not match their registered schema: strict rejects (422), "
        "warn accepts with warnings, off checks nothing (env OJS_SCHEMA_VALIDATION; "
        "default warn)",
    )
    run.add_argument(
        "--schema-refresh",
        type=float,
        default=float(os.environ.get("OJS_SCHEMA_REFRESH", str(_DEFAULTS.schema_refresh))),
        help="seconds a process checks enqueues against its cached schemas before reloading "
        "them: how soon a schema changed through another process applies here "
        "(env OJS_SCHEMA_REFRESH; default 1)",
    )
    run.add_argument(
        "--tenants",
        type=_static_tenants,
        default=os.environ.get("OJS_TENANTS", ""),
        help="static tenant configuration (ojs-multi-tenancy §8.1), written at start-up: JSON "
        'or a JSON file\'s path, {tenant_id: {"limits": {...}, ...}} (env OJS_TENANTS)',
    )
    run.add_argument(
        "--direct-routes",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("OJS_DIRECT_ROUTES", True),
        help="serve the hot endpoints (enqueue, batch, fetch, ack, nack) on the direct ASGI "
        "path; --no-direct-routes has Quart serve every route (env OJS_DIRECT_ROUTES)",
    )
    run.add_argument(
        "--metrics",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("OJS_METRICS_ENABLED", True),
        help="record Prometheus metrics and serve GET /metrics; --no-metrics records nothing "
        "and GET /metrics answers 404 (env OJS_METRICS_ENABLED)",
    )
    run.add_argument(
        "--otel-endpoint",
        default=os.environ.get("OJS_OTEL_ENDPOINT"),
        help="send OpenTelemetry traces to this OTLP/HTTP endpoint (env OJS_OTEL_ENDPOINT; "
        "OTEL_EXPORTER_OTLP_ENDPOINT or OJS_OTEL_ENABLED=true also turn tracing on)",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=os.environ.get("OJS_WORKERS", "1"),  # a string: argparse checks it too
        help="server processes on the one port, each a full server over the shared backend "
        "(sqlite, redis; not memory), restarted if one dies (env OJS_WORKERS; default 1)",
    )
    run.add_argument("--access-log", action="store_true", help="log every request")
    run.add_argument("--log-level", default=os.environ.get("OJS_LOG_LEVEL", "INFO"))
    # A worker process of --workers N: the socket it serves, the pipe from its parent.
    run.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--parent-fd", type=int, default=None, help=argparse.SUPPRESS)
    worker = commands.add_parser(
        "worker",
        help="run the handlers of a job registry (MODULE:OBJECT) until SIGTERM/SIGINT",
    )
    add_worker_arguments(worker)
    # Listed here; main() hands its arguments to the aws package's own parser.
    commands.add_parser(
        "aws-setup",
        add_help=False,
        help="create the AWS backend's DynamoDB table (and SQS queues) unless they exist; "
        "ojs-actors aws-setup --help for its options",
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        return positive_int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _static_tenants(text: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    try:
        return load_static(text)
    except OJSError as error:
        raise argparse.ArgumentTypeError(f"{error.message} {error.details}") from None
    except (OSError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"cannot read the tenant configuration: {error}") from None


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """What ``serve`` runs with, from its parsed arguments (and the environment)."""
    return ServeConfig(
        backend=args.backend,
        backend_options=REGISTRY.entry(args.backend).options_from(vars(args)),
        host=args.host,
        port=args.port,
        http=HttpSettings(
            allow_reset=args.allow_reset,
            max_body_bytes=args.max_body_bytes,
            api_keys=_api_keys(),
            request_timeout=args.request_timeout,
            direct_routes=args.direct_routes,
            stream=StreamSettings(
                buffer_size=args.stream_buffer_size, stall_timeout=args.stream_stall_timeout
            ),
        ),
        system=Settings(
            poll_interval=args.poll_interval,
            test_hooks=args.allow_reset,
            workflow_retention=args.workflow_retention,
            worker_idle_timeout=args.worker_idle_timeout,
            metrics=args.metrics,
            webhook_allowed_hosts=_webhook_hosts(),
            webhook_concurrency=_env_positive("OJS_WEBHOOK_CONCURRENCY", "webhook_concurrency"),
            webhook_timeout=float(os.environ.get("OJS_WEBHOOK_TIMEOUT", _DEFAULTS.webhook_timeout)),
            webhook_log_limit=_env_positive("OJS_WEBHOOK_LOG_LIMIT", "webhook_log_limit"),
            schema_validation=args.schema_validation,
            schema_refresh=args.schema_refresh,
            tenants=args.tenants,
        ),
        tracing=TracingSettings.from_env(endpoint=args.otel_endpoint, backend=args.backend),
        access_log=args.access_log,
        allow_insecure_no_auth=_env_flag("OJS_ALLOW_INSECURE_NO_AUTH", False),
        listen_fd=args.listen_fd,
        parent_fd=args.parent_fd,
        shutdown_timeout=args.shutdown_timeout,
    )


def _shared_backends() -> list[str]:
    return [entry.name for entry in REGISTRY.entries() if entry.shared_between_processes]


def serve_workers(args: argparse.Namespace, arguments: Sequence[str]) -> int:
    """``serve --workers N`` (N > 1): refuse what N processes cannot serve as one server,
    then run and supervise them (:mod:`ojs_actors.http.workers`)."""
    if not REGISTRY.entry(args.backend).shared_between_processes:
        print(
            f"ojs-actors: --workers {args.workers} needs a backend shared between processes: "
            f"with --backend {args.backend} each worker process would have its own memory (its "
            "own jobs, queues and workflows), so they would not behave as one server. Use "
            f"--backend {' or --backend '.join(_shared_backends())}, or --workers 1.",
            file=sys.stderr,
        )
        return 2
    if sys.platform == "win32":
        print("ojs-actors: --workers above 1 needs a POSIX system.", file=sys.stderr)
        return 2
    try:
        check_exposure(serve_config(args))
        REGISTRY.entry(args.backend).check_installed()
    except (InsecureBinding, MissingExtra) as refusal:
        print(f"ojs-actors: {refusal}", file=sys.stderr)
        return 2
    plan = WorkerPlan(
        arguments=arguments,
        workers=args.workers,
        host=args.host,
        port=args.port,
        stop_timeout=args.shutdown_timeout + STOP_MARGIN,  # the children's grace, then theirs
    )
    return run_workers(plan)


def aws_setup(arguments: Sequence[str]) -> int:
    """``ojs-actors aws-setup``. Its options come from the aws package, whose import loads
    aiobotocore (an optional extra, about 0.4 s): only this command pays for it."""
    try:
        from .backends.aws._command import main as aws_setup_main
    except ModuleNotFoundError as error:
        if (error.name or "").startswith("ojs_actors"):
            raise
        print(
            f"ojs-actors aws-setup needs {error.name}, which is not installed: "
            "pip install 'ojs-actors[aws]'",
            file=sys.stderr,
        )
        return 2
    return aws_setup_main(arguments)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["aws-setup"]:
        return aws_setup(arguments[1:])
    args = build_parser().parse_args(arguments)
    if args.command == "worker":
        return worker_command(args)
    several = args.workers > 1 or args.listen_fd is not None
    logging.basicConfig(
        level=args.log_level.upper(),
        # with several processes on one output, each line says which one wrote it
        format="%(asctime)s %(levelname)s %(name)s"
        + ("[%(process)d]" if several else "")
        + ": %(message)s",
    )
    if args.workers > 1:
        try:
            return serve_workers(args, arguments)
        except KeyboardInterrupt:
            return 0
    try:
        trio.run(serve, serve_config(args))
    except (InsecureBinding, MissingExtra) as refusal:
        print(f"ojs-actors: {refusal}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
