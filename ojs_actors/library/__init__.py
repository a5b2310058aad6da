"""The job library: job definitions registered in the host program, enqueued through the
definition and run by worker groups, in process or by ``ojs-actors worker MODULE:OBJECT``.

    jobs = JobRegistry()

    @jobs.job("email.send", queue="email", retries=5, timeout=30)
    async def send_email(job: Job) -> dict:
        ...

    await send_email.enqueue(system, "to@example.com", priority=10)
    async with jobs.worker_group(system, concurrency=8):
        ...
"""

from ..system.job_context import JobContext, current_job, report_progress
from ._command import add_worker_arguments, worker_command
from ._definition import (
    SERVER_TIMEOUT_MARGIN,
    EnqueueOptions,
    JobDefinition,
    JobTimeout,
    retry_policy,
)
from ._loading import RegistryImportFailed, RegistryNotFound, load_registry
from ._registry import DuplicateJobType, JobRegistry
from ._worker import (
    SignalNames,
    WorkerOptions,
    WorkerReport,
    default_worker_id,
    run_worker,
    work_until_stopped,
)

__all__ = [
    "SERVER_TIMEOUT_MARGIN", "DuplicateJobType", "EnqueueOptions", "JobDefinition", "JobRegistry",
    "JobTimeout", "RegistryImportFailed", "RegistryNotFound", "SignalNames", "WorkerOptions",
    "WorkerReport", "add_worker_arguments", "default_worker_id", "load_registry", "retry_policy",
    "run_worker", "work_until_stopped", "worker_command",
    "JobContext", "current_job", "report_progress",
]  # fmt: skip
