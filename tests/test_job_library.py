"""The job library (``ojs_actors.library``): definitions registered in a ``JobRegistry``,
enqueued through the definition, run by the registry's worker group, and a worker that
stops on request; all on the memory backend with trio's autojump clock."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from test_worker_group import Settled

from ojs_actors import Job, JobDefinition, JobRegistry, JobTimeout, RetryPolicy, State, open_system
from ojs_actors.core import Duplicate, InvalidRequest, OJSError, ValidationFailed
from ojs_actors.library import (
    SERVER_TIMEOUT_MARGIN,
    DuplicateJobType,
    RegistryImportFailed,
    RegistryNotFound,
    WorkerOptions,
    WorkerReport,
    load_registry,
    work_until_stopped,
)
from ojs_actors.system import System, WorkerGroup

QUICK_RETRY = RetryPolicy(initial_interval_ms=1_000, jitter=False)


async def echo(job: Job) -> Any:
    return job.args


def sleeper(seconds: float) -> Any:
    async def sleep(job: Job) -> None:
        await trio.sleep(seconds)

    return sleep


# -- registering ---------------------------------------------------------------------------


def test_the_decorator_registers_a_definition_under_the_functions_name() -> None:
    jobs = JobRegistry()

    @jobs.job("email.send", queue="email", retries=5, timeout=30, priority=10)
    async def send_email(job: Job) -> None:
        return None

    assert isinstance(send_email, JobDefinition)
    assert jobs["email.send"] is send_email and "email.send" in jobs and len(jobs) == 1
    assert send_email.handler.__name__ == "send_email"
    assert (send_email.queue, send_email.priority, send_email.timeout) == ("email", 10, 30)
    assert send_email.retry.max_attempts == 6  # five retries after the first attempt
    assert send_email.timeout_ms == (30 + SERVER_TIMEOUT_MARGIN) * 1000

    report = jobs.register(JobDefinition("report.build", echo, retry=QUICK_RETRY, retries=0))
    assert report.retry == RetryPolicy(max_attempts=1, initial_interval_ms=1_000, jitter=False)
    assert jobs.types == ["email.send", "report.build"]
    assert jobs.queues == ["email", "default"]
    assert list(jobs) == [send_email, report]


def test_a_retry_policy_may_be_given_in_its_wire_form() -> None:
    jobs = JobRegistry()
    flaky = jobs.job("work.flaky", retry={"max_attempts": 4, "on_exhaustion": "dead_letter"})(echo)
    assert flaky.retry.max_attempts == 4 and flaky.retry.on_exhaustion == "dead_letter"
    both = jobs.job("work.both", retry={"max_attempts": 4, "jitter": False}, retries=1)(echo)
    assert both.retry.max_attempts == 2 and both.retry.jitter is False


def test_a_type_registered_twice_is_refused() -> None:
    jobs = JobRegistry()
    jobs.job("email.send")(echo)
    with pytest.raises(DuplicateJobType, match=r"'email.send' is registered already.*echo"):
        jobs.job("email.send", queue="other")(echo)
    with pytest.raises(DuplicateJobType):
        jobs.register(JobDefinition("email.send", echo))
    assert len(jobs) == 1
    JobRegistry().job("email.send")(echo)  # another registry has its own types


def test_a_definition_is_checked_as_ojs_would_check_its_jobs() -> None:
    with pytest.raises(InvalidRequest, match="type"):
        JobDefinition("Email Send", echo)
    with pytest.raises(InvalidRequest, match="queue"):
        JobDefinition("email.send", echo, queue="Not A Queue")
    with pytest.raises(ValidationFailed, match="priority"):
        JobDefinition("email.send", echo, priority=1000)
    with pytest.raises(OJSError, match="retry"):
        JobRegistry().job("email.send", retry={"max_attempts": -1})
    with pytest.raises(ValueError, match="retries"):
        JobDefinition("email.send", echo, retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        JobDefinition("email.send", echo, timeout=0)

    def not_async(job: Job) -> None:
        return None

    with pytest.raises(TypeError, match="async function"):
        JobDefinition("email.send", not_async)  # type: ignore[arg-type]


# -- enqueueing ----------------------------------------------------------------------------


async def test_enqueue_through_a_definition_carries_its_defaults(autojump_clock: Any) -> None:
    jobs = JobRegistry()
    send = jobs.job("email.send", queue="email", retries=4, timeout=30, priority=5)(echo)
    async with open_system() as system:
        job = await send.enqueue(system, "to@example.com", {"subject": "hi"})
        stored = await system.info(job.id)
        assert stored.type == "email.send" and stored.state is State.AVAILABLE
        assert stored.args == ["to@example.com", {"subject": "hi"}]
        assert (stored.queue, stored.priority, stored.retry.max_attempts) == ("email", 5, 5)
        assert stored.timeout_ms == send.timeout_ms


async def test_enqueue_options_override_the_definition(autojump_clock: Any) -> None:
    jobs = JobRegistry()
    send = jobs.job("email.send", queue="email", retries=4)(echo)
    async with open_system() as system:
        now = system.clock()
        job = await send.enqueue(
            system,
            "a",
            queue="urgent",
            priority=-3,
            retries=0,
            delay=90,
            meta={"trace": "t1"},
            tags=["x"],
            visibility_timeout=60,
        )
        assert (job.queue, job.priority, job.retry.max_attempts) == ("urgent", -3, 1)
        assert job.state is State.SCHEDULED and job.scheduled_at == now + 90_000
        assert job.meta == {"trace": "t1"} and list(job.tags) == ["x"]
        assert job.visibility_timeout_ms == 60_000
        policy = await send.enqueue(system, "b", retry={"max_attempts": 9})
        assert policy.retry.max_attempts == 9 and policy.queue == "email"
        with pytest.raises(TypeError, match="unknown enqueue options: colour"):
            await send.enqueue(system, "c", colour="red")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="scheduled_at or delay"):
            await send.enqueue(system, "c", delay=1, scheduled_at="2030-01-01T00:00:00Z")


async def test_enqueue_many_stores_every_job_or_none(autojump_clock: Any) -> None:
    jobs = JobRegistry()
    send = jobs.job("email.send")(echo)
    unique = {"keys": ["type", "args"]}
    async with open_system() as system:
        stored = await send.enqueue_many(system, [["a"], ["b"], ["c"]], priority=7)
        assert [job.args for job in stored] == [["a"], ["b"], ["c"]]
        assert all(job.priority == 7 for job in stored)
        await send.enqueue(system, "held", unique=unique)
        with pytest.raises(Duplicate):
            await send.enqueue_many(system, [["fresh"], ["held"]], unique=unique)
        counts = await system.backend.count_jobs("default")
        assert counts[State.AVAILABLE] == 4  # "fresh" was not stored either


# -- running -------------------------------------------------------------------------------


async def test_the_registrys_worker_group_runs_its_handlers_on_its_queues(
    autojump_clock: Any,
) -> None:
    jobs = JobRegistry()

    @jobs.job("email.send", queue="email")
    async def send(job: Job) -> dict[str, Any]:
        return {"sent": job.args[0]}

    @jobs.job("report.build")
    async def build(job: Job) -> int:
        return len(job.args)

    settled = Settled()
    async with open_system() as system:
        mails = [await send.enqueue(system, f"to{n}") for n in range(3)]
        report = await build.enqueue(system, 1, 2)
        moved = await send.enqueue(system, "elsewhere", queue="default")  # still found
        async with jobs.worker_group(system, concurrency=2, on_settled=settled) as group:
            await settled.until(lambda: settled.count(State.COMPLETED) == 5)
        assert group.queues == ["email", "default"]
        for n, mail in enumerate(mails):
            assert (await system.info(mail.id)).result == {"sent": f"to{n}"}
        assert (await system.info(report.id)).result == 2
        assert (await system.info(moved.id)).result == {"sent": "elsewhere"}


async def test_the_worker_group_fetches_the_queues_it_is_given(autojump_clock: Any) -> None:
    jobs = JobRegistry()
    send = jobs.job("email.send", queue="email")(echo)
    build = jobs.job("report.build")(echo)
    settled = Settled()
    async with open_system() as system:
        mail = await send.enqueue(system, "x")
        report = await build.enqueue(system, "y")
        async with jobs.worker_group(system, ["default"], on_settled=settled):
            await settled.until(lambda: settled.count(State.COMPLETED) == 1)
            await trio.sleep(5)
        assert (await system.info(report.id)).state is State.COMPLETED
        assert (await system.info(mail.id)).state is State.AVAILABLE
    with pytest.raises(ValueError, match="no job definitions"):
        JobRegistry().worker_group(system)


async def test_retries_follow_the_definitions_policy(autojump_clock: Any) -> None:
    jobs = JobRegistry()
    attempts: list[int] = []

    @jobs.job("work.flaky", retries=2, retry=QUICK_RETRY)
    async def flaky(job: Job) -> str:
        attempts.append(job.attempt)
        if job.attempt < 3:
            raise ConnectionError(f"try {job.attempt}")
        return "third time"

    settled = Settled()
    async with open_system() as system:
        job = await flaky.enqueue(system)
        async with jobs.worker_group(system, on_settled=settled):
            await settled.until(lambda: settled.count(State.COMPLETED) == 1)
        stored = await system.info(job.id)
        assert attempts == [1, 2, 3] and stored.result == "third time"
        assert [error["type"] for error in stored.errors] == ["ConnectionError"] * 2


async def test_a_handler_past_its_timeout_is_cancelled_and_fails_with_job_timeout(
    autojump_clock: Any,
) -> None:
    jobs = JobRegistry()
    cancelled: list[int] = []

    @jobs.job("work.slow", timeout=5, retries=1, retry=QUICK_RETRY)
    async def slow(job: Job) -> str:
        try:
            await trio.sleep(3 if job.args[0] == "quick" else 3600)
        except trio.Cancelled:
            cancelled.append(job.attempt)
            raise
        return "in time"

    settled = Settled()
    async with open_system() as system:
        stuck = await slow.enqueue(system, "stuck")
        quick = await slow.enqueue(system, "quick")
        started = trio.current_time()
        async with jobs.worker_group(system, on_settled=settled):
            await settled.until(lambda: settled.count(State.DISCARDED) == 1)
            # two attempts of 5 s and the 1 s backoff between them, not an hour
            assert trio.current_time() - started < 5 + 1 + 5 + 1
            await settled.until(lambda: settled.count(State.COMPLETED) == 1)
        job = await system.info(stuck.id)
        assert cancelled == [1, 2] and job.attempt == 2
        assert [(error["type"], error["message"]) for error in job.errors] == [
            ("JobTimeout", "The handler of work.slow ran past its timeout of 5 s.")
        ] * 2
        assert (await system.info(quick.id)).result == "in time"


async def test_the_timed_handler_raises_job_timeout_itself(autojump_clock: Any) -> None:
    async def forever(job: Job) -> None:
        await trio.sleep_forever()

    runner = JobDefinition("work.forever", forever, timeout=2).runner()
    job = Job(id="x", type="work.forever", args=[])
    with pytest.raises(JobTimeout):
        await runner(job)
    assert JobDefinition("work.forever", forever).runner() is forever  # no limit, no wrapper


# -- a worker, stopped on request ----------------------------------------------------------


async def start_worker(
    nursery: trio.Nursery,
    system: System,
    jobs: JobRegistry,
    options: WorkerOptions,
    reports: list[WorkerReport],
) -> tuple[trio.MemorySendChannel[str], WorkerGroup]:
    stops, requests = trio.open_memory_channel[str](2)

    async def work(*, task_status: trio.TaskStatus[WorkerGroup]) -> None:
        reports.append(
            await work_until_stopped(system, jobs, requests, options, task_status=task_status)
        )

    group: WorkerGroup = await nursery.start(work)
    return stops, group


async def test_a_stop_request_lets_running_handlers_finish_and_hands_back_the_rest(
    autojump_clock: Any,
) -> None:
    jobs = JobRegistry()
    finished: list[str] = []

    @jobs.job("work.long")
    async def long(job: Job) -> None:
        await trio.sleep(10)
        finished.append(job.id)

    reports: list[WorkerReport] = []
    options = WorkerOptions(concurrency=2, batch_size=6, grace_period=60, worker_id="w1")
    async with open_system() as system:
        queued = await long.enqueue_many(system, [[n] for n in range(6)])
        async with trio.open_nursery() as nursery:
            stops, group = await start_worker(nursery, system, jobs, options, reports)
            await trio.sleep(1)  # two handlers running, four claimed and waiting
            assert group.stats.claimed == 6
            await stops.send("SIGTERM")
        [report] = reports
        assert (report.reason, report.at_once, report.worker_id) == ("SIGTERM", False, "w1")
        assert 9 <= report.seconds <= 11  # the running handlers' remaining time
        assert (report.stats.completed, report.stats.requeued, report.stats.interrupted) == (
            2,
            4,
            0,
        )
        states = [(await system.info(job.id)).state for job in queued]
        assert states.count(State.COMPLETED) == 2 and states.count(State.AVAILABLE) == 4
        assert [(await system.info(job_id)).attempt for job_id in finished] == [1, 1]


async def test_a_second_stop_request_cancels_running_handlers_and_stores_their_failure(
    autojump_clock: Any,
) -> None:
    jobs = JobRegistry()
    long = jobs.job("work.long", retry=QUICK_RETRY)(sleeper(3600))
    reports: list[WorkerReport] = []
    options = WorkerOptions(concurrency=2, batch_size=2, grace_period=600)
    async with open_system() as system:
        queued = await long.enqueue_many(system, [[1], [2]])
        async with trio.open_nursery() as nursery:
            stops, _ = await start_worker(nursery, system, jobs, options, reports)
            await trio.sleep(1)
            await stops.send("SIGTERM")
            await trio.sleep(5)  # well within the grace period
            await stops.send("SIGINT")
        [report] = reports
        assert report.at_once and report.seconds < 10
        assert report.stats.interrupted == 2 and report.stats.settle_errors == 0
        for job in queued:
            stored = await system.info(job.id)
            assert stored.state is State.RETRYABLE  # failed, retried as the policy says
            assert stored.error is not None and stored.error["type"] == "ShutdownError"


# -- finding a registry by name ------------------------------------------------------------


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on ``sys.path`` for modules of this test alone."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def test_load_registry_finds_a_registry_or_a_function_returning_one(app_dir: Path) -> None:
    write_module(
        app_dir,
        "lib_app_ok",
        """
        from ojs_actors import JobRegistry

        jobs = JobRegistry()

        class App:
            jobs = jobs

        def make_jobs():
            return jobs
        """,
    )
    import lib_app_ok  # type: ignore[import-not-found]

    assert load_registry("lib_app_ok:jobs") is lib_app_ok.jobs
    assert load_registry("lib_app_ok:App.jobs") is lib_app_ok.jobs
    assert load_registry("lib_app_ok:make_jobs") is lib_app_ok.jobs


def test_load_registry_says_what_is_wrong(app_dir: Path) -> None:
    write_module(app_dir, "lib_app_other", "jobs = 42\n")
    write_module(app_dir, "lib_app_broken", "raise RuntimeError('config missing')\n")
    write_module(app_dir, "lib_app_needs", "import lib_app_not_installed\n")
    cases = {
        "lib_app_other": "expected MODULE:OBJECT",
        "lib_app_missing:jobs": "no module named 'lib_app_missing'",
        "lib_app_other:tasks": "'lib_app_other' has no attribute 'tasks'",
        "lib_app_other:jobs": "is no JobRegistry .*: it is of type int",
    }
    for target, message in cases.items():
        with pytest.raises(RegistryNotFound, match=message):
            load_registry(target)
    with pytest.raises(RegistryImportFailed, match="config missing") as failed:
        load_registry("lib_app_broken:jobs")
    assert isinstance(failed.value.__cause__, RuntimeError)
    with pytest.raises(RegistryImportFailed, match="lib_app_not_installed"):
        load_registry("lib_app_needs:jobs")
