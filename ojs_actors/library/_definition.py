"""A job definition: one OJS job type, its handler and its defaults, and enqueueing through it."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypedDict, Unpack

import trio

from ..core import DEFAULT_POLICY, InvalidRequest, Job, RetryPolicy, parse_enqueue, parse_policy
from ..core.timefmt import format_duration_ms, format_ms
from ..core.version_routes import parse_version_range
from ..system import Handler, System

SERVER_TIMEOUT_MARGIN = 5.0
"""Seconds added to a definition's ``timeout`` in the OJS ``timeout_ms`` its jobs carry.
The worker cancels the handler at ``timeout`` and reports :class:`JobTimeout`; the
server's scheduler fails the attempt at ``timeout_ms`` whatever the worker does
(ojs-timeouts §7: the worker first, the server as the backstop). Without the margin
both would fire at once and one report would be refused."""


class JobTimeout(Exception):
    """A handler ran past its definition's ``timeout``: it was cancelled and the attempt
    fails with error type ``JobTimeout`` (retried as the retry policy says)."""


class EnqueueOptions(TypedDict, total=False):
    """Per-job options of :meth:`JobDefinition.enqueue`, each an OJS enqueue option;
    unset, the definition's default (or OJS's) applies."""

    id: str
    """The job's id, a UUIDv7 (default: a new one)."""
    queue: str
    priority: int
    retries: int
    """Retries after the first attempt (``max_attempts`` = ``retries + 1``)."""
    retry: RetryPolicy | Mapping[str, Any]
    """A whole retry policy (a mapping is read as the OJS wire form)."""
    scheduled_at: datetime | str
    """Not before then (an aware datetime, or RFC 3339)."""
    delay: float | timedelta
    """Not before this long from now (seconds)."""
    expires_at: datetime | str
    """Discarded if not started by then."""
    meta: Mapping[str, Any]
    tags: Sequence[str]
    unique: Mapping[str, Any]
    """An OJS unique policy (``{"keys": [...], "period": "PT1H", ...}``)."""
    visibility_timeout: float
    """Seconds a claim is leased for (the worker group renews the lease of running jobs)."""


def retry_policy(
    retry: RetryPolicy | Mapping[str, Any] | None = None, retries: int | None = None
) -> RetryPolicy:
    """``retry`` (a policy, its wire form, or the default) with ``retries`` applied."""
    if retry is None:
        policy = DEFAULT_POLICY
    elif isinstance(retry, RetryPolicy):
        policy = retry
    else:
        policy = parse_policy(dict(retry))
    if retries is not None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, not {retries!r}")
        policy = replace(policy, max_attempts=retries + 1)
    return policy


@dataclass(frozen=True, slots=True)
class JobDefinition:
    """A job type this program handles: ``name`` (the OJS job type, e.g. ``email.send``),
    ``handler`` (``async def handler(job: Job) -> result``) and the defaults of the jobs
    enqueued through it. Register it in a :class:`~ojs_actors.library.JobRegistry`."""

    name: str
    handler: Handler
    queue: str = "default"
    retry: RetryPolicy = DEFAULT_POLICY
    retries: int | None = None
    """If set, replaces ``retry.max_attempts`` with ``retries + 1``."""
    timeout: float | None = None
    """Seconds a handler may run; past it, it is cancelled and the attempt fails with
    :class:`JobTimeout`. ``None``: no limit but the lease's."""
    priority: int = 0
    versions: str = "*"
    """The job versions the handler takes (ojs-job-versioning §8.1: ``"*"``, ``"2.0"``,
    ``">=1.0 <3.0"``); a worker group running it is handed no job of this type outside
    them (they stay ``available`` for another worker)."""

    def __post_init__(self) -> None:
        if not callable(self.handler):
            raise TypeError(f"the handler of {self.name!r} is not callable")
        if inspect.isfunction(self.handler) and not inspect.iscoroutinefunction(self.handler):
            raise TypeError(
                f"the handler of {self.name!r} must be an async function "
                "(async def handler(job: Job) -> result)"
            )
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"the timeout of {self.name!r} must be > 0 seconds")
        object.__setattr__(self, "retry", retry_policy(self.retry, self.retries))
        try:
            parse_version_range(self.versions)
        except InvalidRequest as error:
            raise ValueError(f"the versions of {self.name!r}: {error.message}") from None
        parse_enqueue(self.request(), 0)  # the name, queue and priority, checked as OJS would

    @property
    def timeout_ms(self) -> int | None:
        """The OJS ``timeout_ms`` the jobs carry (see :data:`SERVER_TIMEOUT_MARGIN`)."""
        if self.timeout is None:
            return None
        return round((self.timeout + SERVER_TIMEOUT_MARGIN) * 1000)

    def request(self, *args: Any, **options: Unpack[EnqueueOptions]) -> dict[str, Any]:
        """The OJS enqueue request of a job of this type with ``args``: what
        :meth:`enqueue` sends, and what ``System.enqueue_batch`` takes (to enqueue jobs of
        several definitions at once)."""
        unknown = set(options) - set(EnqueueOptions.__annotations__)
        if unknown:
            raise TypeError(f"unknown enqueue options: {', '.join(sorted(unknown))}")
        settings: dict[str, Any] = {
            "queue": options.get("queue", self.queue),
            "priority": options.get("priority", self.priority),
            "retry": self._policy(options).to_wire(),
        }
        if self.timeout_ms is not None:
            settings["timeout_ms"] = self.timeout_ms
        if "scheduled_at" in options and "delay" in options:
            raise TypeError("give scheduled_at or delay, not both")
        if "scheduled_at" in options:
            settings["scheduled_at"] = _timestamp(options["scheduled_at"], "scheduled_at")
        if "delay" in options:
            settings["scheduled_at"] = "+" + format_duration_ms(_ms(options["delay"], "delay"))
        if "expires_at" in options:
            settings["expires_at"] = _timestamp(options["expires_at"], "expires_at")
        if "tags" in options:
            settings["tags"] = list(options["tags"])
        if "unique" in options:
            settings["unique"] = dict(options["unique"])
        if "visibility_timeout" in options:
            ms = _ms(options["visibility_timeout"], "visibility_timeout")
            settings["visibility_timeout_ms"] = ms
        body: dict[str, Any] = {"type": self.name, "args": list(args), "options": settings}
        if "meta" in options:
            body["meta"] = dict(options["meta"])
        if "id" in options:
            body["id"] = options["id"]
        return body

    def _policy(self, options: EnqueueOptions) -> RetryPolicy:
        if "retry" not in options and "retries" not in options:
            return self.retry
        return retry_policy(options.get("retry", self.retry), options.get("retries"))

    async def enqueue(
        self, system: System, /, *args: Any, **options: Unpack[EnqueueOptions]
    ) -> Job:
        """Enqueue one job of this type with ``args`` through ``system``; the job as stored
        (under a unique policy that ignores duplicates, the job that holds the key)."""
        return await system.enqueue(self.request(*args, **options))

    async def enqueue_many(
        self,
        system: System,
        args: Sequence[Sequence[Any]],
        /,
        **options: Unpack[EnqueueOptions],
    ) -> list[Job]:
        """Enqueue one job per item of ``args`` (each the job's argument list), all with
        ``options``, atomically: every job is stored, or none is."""
        if "id" in options:
            raise TypeError("enqueue_many gives each job its own id; enqueue them one by one")
        return await system.enqueue_batch([self.request(*each, **options) for each in args])

    def runner(self) -> Handler:
        """The handler as a worker group runs it: limited to ``timeout`` if set."""
        if self.timeout is None:
            return self.handler
        return _TimedHandler(self.name, self.handler, self.timeout)


@dataclass(frozen=True, slots=True)
class _TimedHandler:
    name: str
    handler: Handler
    timeout: float

    async def __call__(self, job: Job) -> Any:
        with trio.move_on_after(self.timeout):
            return await self.handler(job)
        raise JobTimeout(f"The handler of {self.name} ran past its timeout of {self.timeout:g} s.")


def _timestamp(value: datetime | str, field: str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError(f"{field} must be a timezone-aware datetime")
    return format_ms(round(value.timestamp() * 1000))


def _ms(value: float | timedelta, field: str) -> int:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if not seconds >= 0:
        raise ValueError(f"{field} must be >= 0 seconds")
    return round(seconds * 1000)


__all__ = [
    "SERVER_TIMEOUT_MARGIN", "EnqueueOptions", "JobDefinition", "JobTimeout", "retry_policy",
]  # fmt: skip
