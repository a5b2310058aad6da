"""``ojs-actors worker MODULE:OBJECT``: its arguments and its run, exit code included.

Exit codes: 0 stopped by SIGTERM or SIGINT; 1 the backend could not be opened (or the
worker failed unexpectedly); 2 bad arguments, a ``MODULE:OBJECT`` that names no registry,
a backend not shared between processes (memory), or one whose extra is not installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from functools import partial

import trio

from ..backends import REGISTRY, MissingExtra
from ..backends.options import argparse_type, positive_float, positive_int
from ..core import OJSError, parse_queue_name
from ..system import Settings
from ..system.tracing import TracingSettings, tracing
from ._loading import RegistryImportFailed, RegistryNotFound, load_registry
from ._worker import WorkerOptions, run_worker

PROG = "ojs-actors worker"


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``worker`` subcommand's arguments; backend options exactly as ``serve`` has them."""
    parser.add_argument(
        "target",
        metavar="MODULE:OBJECT",
        help="the JobRegistry to run (or a function returning one), e.g. myapp.tasks:jobs; "
        "MODULE is imported from the working directory or PYTHONPATH",
    )
    REGISTRY.add_arguments(parser)
    parser.add_argument(
        "--queues",
        type=_queues,
        default=os.environ.get("OJS_WORKER_QUEUES") or None,
        help="queues to fetch from, comma-separated, in order (env OJS_WORKER_QUEUES; "
        "default: the registry's)",
    )
    parser.add_argument(
        "--concurrency",
        type=argparse_type(positive_int),
        default=os.environ.get("OJS_WORKER_CONCURRENCY", "16"),
        help="handlers running at once (env OJS_WORKER_CONCURRENCY; default 16)",
    )
    parser.add_argument(
        "--batch-size",
        type=argparse_type(positive_int),
        default=os.environ.get("OJS_WORKER_BATCH_SIZE", "100"),
        help="jobs claimed per fetch (env OJS_WORKER_BATCH_SIZE; default 100)",
    )
    parser.add_argument(
        "--grace-period",
        type=argparse_type(_seconds),
        default=os.environ.get("OJS_WORKER_GRACE_PERIOD", "30"),
        help="seconds running handlers get to finish after SIGTERM/SIGINT "
        "(env OJS_WORKER_GRACE_PERIOD; default 30)",
    )
    parser.add_argument(
        "--worker-id",
        default=os.environ.get("OJS_WORKER_ID") or None,
        help="recorded on the jobs it claims (env OJS_WORKER_ID; default <host>-<pid>)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=argparse_type(positive_float),
        default=os.environ.get("OJS_WORKER_VISIBILITY_TIMEOUT") or None,
        help="seconds the jobs it claims are leased for, renewed while they run: how soon "
        "another worker gets them if this one dies (env OJS_WORKER_VISIBILITY_TIMEOUT; "
        "default: each job's own, 1800 unless set at enqueue)",
    )
    parser.add_argument(
        "--poll-interval",
        type=argparse_type(positive_float),
        default=os.environ.get("OJS_POLL_INTERVAL", "1.0"),
        help="seconds between looks for work stored by other processes, and backend polls "
        "by timers (env OJS_POLL_INTERVAL; default 1)",
    )
    parser.add_argument("--log-level", default=os.environ.get("OJS_LOG_LEVEL", "INFO"))


def worker_command(args: argparse.Namespace) -> int:
    """Run ``ojs-actors worker`` with its parsed arguments; the exit code."""
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    if os.getcwd() not in sys.path:  # as `python -m` would: the app's modules are here
        sys.path.insert(0, os.getcwd())
    try:
        registry = load_registry(args.target)
    except RegistryNotFound as error:
        return _refuse(str(error))
    except RegistryImportFailed as error:
        cause = error.__cause__
        if cause is not None:
            traceback.print_exception(cause, file=sys.stderr)
        return _refuse(str(error))
    if not len(registry):
        return _refuse(f"{args.target!r} has no job definitions")
    entry = REGISTRY.entry(args.backend)
    if not entry.shared_between_processes:
        shared = [other.name for other in REGISTRY.entries() if other.shared_between_processes]
        return _refuse(
            f"the {entry.name} backend lives in one process, so no job stored elsewhere would "
            f"reach this worker: use --backend {' or --backend '.join(shared)} (or OJS_BACKEND)"
        )
    try:
        backend = entry.create(**entry.options_from(vars(args)))
    except (MissingExtra, ValueError) as error:
        return _refuse(str(error))
    options = WorkerOptions(
        queues=args.queues or (),
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        grace_period=args.grace_period,
        worker_id=args.worker_id,
        visibility_timeout_ms=(
            None if args.visibility_timeout is None else round(args.visibility_timeout * 1000)
        ),
    )
    settings = Settings(poll_interval=args.poll_interval)
    try:
        with tracing(TracingSettings.from_env(backend=args.backend)):
            trio.run(partial(run_worker, registry, backend, options, settings=settings))
    except KeyboardInterrupt:  # before the signal receiver was open
        return 0
    except MissingExtra as error:  # the tracing extra
        return _refuse(str(error))
    except BaseException as error:
        failure = _backend_failure(error)
        if failure is None:
            raise
        print(f"{PROG}: the {args.backend} backend failed: {failure}", file=sys.stderr)
        return 1
    return 0


def _backend_failure(error: BaseException) -> BaseException | None:
    """The backend's error (unavailable, unusable file) if that is all ``error`` is."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error if isinstance(error, OJSError | OSError) else None


def _refuse(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"expected a number of seconds >= 0, not {text!r}")
    return value


def _queues(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected queue names, comma-separated")
    for name in names:
        try:
            parse_queue_name(name)
        except OJSError:
            raise argparse.ArgumentTypeError(f"{name!r} is no valid queue name") from None
    return names


__all__ = ["add_worker_arguments", "worker_command"]
