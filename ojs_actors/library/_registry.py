"""The job registry: the job definitions of a program, and the worker groups that run them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from ..core import Job, RetryPolicy
from ..system import Handler, System, WorkerGroup
from ._definition import JobDefinition, retry_policy


class DuplicateJobType(ValueError):
    """A job type registered twice in one registry."""


class JobRegistry:
    """The job types a program handles, by name::

        jobs = JobRegistry()

        @jobs.job("email.send", queue="email", retries=5, timeout=30)
        async def send_email(job: Job) -> dict:
            ...

        await send_email.enqueue(system, "to@example.com")
        async with jobs.worker_group(system) as group:
            ...

    ``ojs-actors worker MODULE:OBJECT`` runs a registry in a worker process."""

    def __init__(self) -> None:
        self._definitions: dict[str, JobDefinition] = {}

    def register(self, definition: JobDefinition) -> JobDefinition:
        """Add ``definition``; returns it. A type registered already is refused."""
        known = self._definitions.get(definition.name)
        if known is not None:
            raise DuplicateJobType(
                f"job type {definition.name!r} is registered already (handler "
                f"{_describe(known.handler)}); a type has one handler per registry"
            )
        self._definitions[definition.name] = definition
        return definition

    def job(
        self,
        name: str,
        *,
        queue: str = "default",
        retries: int | None = None,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        timeout: float | None = None,
        priority: int = 0,
        versions: str = "*",
    ) -> Callable[[Handler], JobDefinition]:
        """A decorator registering the ``async def`` below it as the handler of ``name``;
        the decorated name is then the :class:`JobDefinition` (``.enqueue(system, *args)``).
        ``retry``: a :class:`RetryPolicy` or its OJS wire form; ``retries``: retries after
        the first attempt (``max_attempts - 1``); ``versions``: the job versions the
        handler takes (:attr:`JobDefinition.versions`)."""
        policy = retry_policy(retry, retries)

        def register(handler: Handler) -> JobDefinition:
            return self.register(
                JobDefinition(
                    name,
                    handler,
                    queue=queue,
                    retry=policy,
                    timeout=timeout,
                    priority=priority,
                    versions=versions,
                )
            )

        return register

    # -- what is registered -------------------------------------------------------------

    def __getitem__(self, name: str) -> JobDefinition:
        return self._definitions[name]

    def __contains__(self, name: object) -> bool:
        return name in self._definitions

    def __iter__(self) -> Iterator[JobDefinition]:
        return iter(list(self._definitions.values()))

    def __len__(self) -> int:
        return len(self._definitions)

    @property
    def types(self) -> list[str]:
        """The registered job types, in registration order."""
        return list(self._definitions)

    @property
    def queues(self) -> list[str]:
        """The definitions' queues, each once, in registration order."""
        return list(dict.fromkeys(definition.queue for definition in self._definitions.values()))

    def handlers(self) -> dict[str, Handler]:
        """Job type -> handler as a worker group runs it (limited to its timeout)."""
        return {name: definition.runner() for name, definition in self._definitions.items()}

    def versions(self) -> dict[str, str]:
        """Job type -> the version range its definition takes, for those narrower than
        ``"*"`` (what a worker group declares, ojs-job-versioning §8.1)."""
        return {
            name: definition.versions
            for name, definition in self._definitions.items()
            if definition.versions.strip() != "*"
        }

    # -- running ------------------------------------------------------------------------

    def worker_group(
        self,
        system: System,
        queues: Sequence[str] | None = None,
        *,
        concurrency: int = 16,
        batch_size: int = 100,
        worker_id: str | None = None,
        visibility_timeout_ms: int | None = None,
        grace_period: float = 30.0,
        heartbeat_interval: float = 30.0,
        on_settled: Callable[[Sequence[Job]], None] | None = None,
        tenant: str | None = None,
    ) -> AbstractAsyncContextManager[WorkerGroup]:
        """:meth:`System.worker_group` running every registered handler on ``queues``
        (default: :attr:`queues`); every handler, so a job enqueued on another queue than
        its definition's still finds its own. ``tenant``: work for that tenant only. The
        group declares each definition's ``versions``: it is handed no job outside them."""
        if not self._definitions:
            raise ValueError("the registry has no job definitions to run")
        return system.worker_group(
            list(queues) if queues else self.queues,
            self.handlers(),
            concurrency=concurrency,
            batch_size=batch_size,
            worker_id=worker_id,
            visibility_timeout_ms=visibility_timeout_ms,
            grace_period=grace_period,
            heartbeat_interval=heartbeat_interval,
            on_settled=on_settled,
            tenant=tenant,
            versions=self.versions(),
        )

    def __repr__(self) -> str:
        return f"JobRegistry({', '.join(self._definitions) or 'empty'})"


def _describe(handler: Handler) -> str:
    module = getattr(handler, "__module__", None)
    name = getattr(handler, "__qualname__", None) or type(handler).__name__
    return f"{module}.{name}" if module else name


__all__ = ["DuplicateJobType", "JobRegistry"]
