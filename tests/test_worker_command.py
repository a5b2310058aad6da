"""``ojs-actors worker MODULE:OBJECT``: real worker processes over shared backends.

The handlers are a module written to the test's directory, the workers' working
directory (``ojs-actors worker`` imports from there). Each run appends a line to a file
(``start``/``done``, job id, process id, attempt; one short ``O_APPEND`` write each, whole
even with several processes writing), so a test checks which process ran what, and how
often. Jobs are enqueued through an embedded system in the test process (a third process
on the backend) or over HTTP to a real ``ojs-actors serve``. Waits are real time, bounded.

The backend-shared tests run once per entry of :data:`SHARED_BACKENDS`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from serving import OjsServer

from ojs_actors import Job, State, open_system
from ojs_actors.backends import REGISTRY, create_backend
from ojs_actors.system import Settings, System
from ojs_actors.testing.services import free_port

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

WAIT_S = 60.0
"""The longest any wait of these tests may take."""
POLL_S = 0.1
"""``--poll-interval`` of the workers: how soon they see jobs stored by another process."""

HANDLERS = """
import os

import trio

from ojs_actors import Job, JobRegistry, RetryPolicy

jobs = JobRegistry()


def record(event: str, job: Job) -> None:
    with open(os.environ["OJS_TEST_RUNS"], "a") as runs:
        runs.write(f"{event} {job.id} {os.getpid()} {job.attempt}\\n")


@jobs.job("test.work", queue="work", retries=5, retry=RetryPolicy(initial_interval_ms=200, jitter=False))
async def work(job: Job) -> dict:
    record("start", job)
    await trio.sleep(job.args[0])
    record("done", job)
    return {"pid": os.getpid()}


def make_jobs() -> JobRegistry:
    return jobs


not_a_registry = 42
"""


# -- the backends the workers share -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shared:
    """A backend several processes share: its ``--backend`` name and factory options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def args(self) -> list[str]:
        """The command-line flags that make this backend (as ``serve`` takes them)."""
        flags = {option.name: option.flag for option in REGISTRY.entry(self.name).options}
        args = ["--backend", self.name]
        for name, value in self.options.items():
            flag = flags[name]
            if isinstance(value, bool):
                args.append(flag if value else f"--no-{flag.removeprefix('--')}")
            else:
                args += [flag, str(value)]
        return args


SHARED_BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Shared]] = {
    "sqlite": lambda request, tmp: Shared("sqlite", {"path": str(tmp / "ojs.db")}),
    "redis": lambda request, tmp: Shared("redis", {"url": request.getfixturevalue("redis_url")}),
    "kafka": lambda request, tmp: Shared("kafka", request.getfixturevalue("kafka_options")),
}
"""One line per backend."""


@pytest.fixture(params=list(SHARED_BACKENDS))
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Shared:
    return SHARED_BACKENDS[request.param](request, tmp_path)


@asynccontextmanager
async def embedded(shared: Shared) -> AsyncIterator[System]:
    """This test process as one more process on the backend (to enqueue and to look)."""
    backend = create_backend(shared.name, **shared.options)
    async with open_system(backend, settings=Settings(poll_interval=POLL_S)) as system:
        yield system


def work(*seconds: float) -> list[dict[str, Any]]:
    return [{"type": "test.work", "args": [s], "options": {"queue": "work"}} for s in seconds]


# -- worker processes and what they ran ---------------------------------------------------


def worker_command() -> list[str]:
    """The installed console script (which imports the app from its working directory),
    else the module."""
    script = Path(sysconfig.get_path("scripts")) / "ojs-actors"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ojs_actors"]


@dataclass(slots=True)
class Run:
    event: str
    job_id: str
    pid: int
    attempt: int


class App:
    """The handlers' module in a directory of the test, and the file their runs go to."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / "handlers.py").write_text(HANDLERS)
        self.runs_path = directory / "runs.txt"
        self.runs_path.touch()
        # The settings are the test's own; the module is found in the working directory.
        self.env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("OJS_") and name != "PYTHONPATH"
        }
        self.env["OJS_TEST_RUNS"] = str(self.runs_path)

    def runs(self) -> list[Run]:
        lines = self.runs_path.read_text().splitlines()
        return [
            Run(e, job_id, int(pid), int(attempt))
            for e, job_id, pid, attempt in map(str.split, lines)
        ]

    def count(self, event: str) -> int:
        return sum(run.event == event for run in self.runs())

    def by_job(self) -> dict[str, list[Run]]:
        found: dict[str, list[Run]] = defaultdict(list)
        for run in self.runs():
            found[run.job_id].append(run)
        return found

    def run(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*worker_command(), "worker", *args],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


class WorkerProcess:
    """``ojs-actors worker handlers:jobs`` on a backend, its output in a log file."""

    def __init__(
        self, app: App, shared: Shared, name: str, *options: str, target: str = "handlers:jobs"
    ) -> None:
        """``shared`` without options: the backend's options come from the environment."""
        self.log_path = app.directory / f"{name}.log"
        backend = shared.args() if shared.options else []
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *worker_command(),
                    "worker",
                    target,
                    *backend,
                    "--poll-interval",
                    str(POLL_S),
                    *options,
                ],  # fmt: skip
                cwd=app.directory,
                env=app.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def logged(self, text: str) -> None:
        with trio.fail_after(WAIT_S):
            while text not in self.log:
                assert self.process.poll() is None, f"the worker exited:\n{self.log}"
                await trio.sleep(0.05)

    def signal(self, signum: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    async def exit_code(self, within: float = WAIT_S) -> int:
        await until(lambda: self.process.poll() is not None, within)
        return self.process.returncode

    def kill(self) -> None:
        """Clean-up: whatever the test did, this process does not outlive it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def app(tmp_path: Path) -> App:
    return App(tmp_path)


class Workers(list[WorkerProcess]):
    """The worker processes of a test; each is killed at the end if still running."""

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app

    def __call__(self, shared: Shared, name: str, *options: str) -> WorkerProcess:
        worker = WorkerProcess(self.app, shared, name, *options)
        self.append(worker)
        return worker


@pytest.fixture
def workers(app: App) -> Iterator[Workers]:
    started = Workers(app)
    yield started
    for worker in started:
        worker.kill()


async def until(condition: Callable[[], bool], within: float = WAIT_S) -> None:
    """Look every 50 ms (the state is another process's: files, exit codes)."""
    with trio.fail_after(within):
        while True:
            if condition():
                return
            await trio.sleep(0.05)


def stopped_line(log: str) -> str:
    [line] = [line for line in log.splitlines() if " stopped (" in line]
    return line


# -- a worker beside a server, on one SQLite file -----------------------------------------


def test_a_worker_runs_the_jobs_a_server_on_the_same_sqlite_file_accepts(
    app: App, tmp_path: Path
) -> None:
    db = str(tmp_path / "shared.db")
    server = OjsServer(
        ["--backend", "sqlite", "--db", db], tmp_path / "server.log", poll_interval=POLL_S
    )
    worker = WorkerProcess(app, Shared("sqlite", {"path": db}), "worker", "--concurrency", "4")
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            ids: list[str] = []
            for _ in range(3):  # while the worker is busy with the earlier batches
                answer = http.post("/ojs/v1/jobs/batch", json={"jobs": work(*[0.01] * 20)})
                assert answer.status_code == 201, answer.text
                ids += [job["id"] for job in answer.json()["jobs"]]
            deadline = time.monotonic() + WAIT_S
            while app.count("done") < len(ids) and time.monotonic() < deadline:
                time.sleep(0.05)
            jobs = [http.get(f"/ojs/v1/jobs/{job_id}").json()["job"] for job_id in ids]
        assert [job["state"] for job in jobs] == ["completed"] * len(ids)
        assert {job["result"]["pid"] for job in jobs} == {worker.pid}
        runs = app.by_job()
        assert sorted(runs) == sorted(ids)
        assert all(
            [run.event for run in job_runs] == ["start", "done"] for job_runs in runs.values()
        )
        worker.signal(signal.SIGTERM)
        assert worker.process.wait(timeout=WAIT_S) == 0
        assert "started: backend sqlite, queues work, concurrency 4" in worker.log
        assert f"completed {len(ids)}, failed 0" in stopped_line(worker.log)
    finally:
        worker.kill()
        server.stop()


# -- several workers on one queue ---------------------------------------------------------


async def test_two_workers_share_one_queue_and_run_each_job_once(
    app: App, shared: Shared, workers: Workers
) -> None:
    options = ("--concurrency", "2", "--batch-size", "2")
    first, second = workers(shared, "first", *options), workers(shared, "second", *options)
    for worker in (first, second):
        await worker.logged("started:")
    count = 80
    async with embedded(shared) as system:
        queued = await system.enqueue_batch(work(*[0.05] * count))
        await until(lambda: app.count("done") == count)
        for worker in (first, second):
            worker.signal(signal.SIGTERM)
        assert [await first.exit_code(), await second.exit_code()] == [0, 0]
        states = [(await system.info(job.id)).state for job in queued]
    assert states == [State.COMPLETED] * count
    runs = app.by_job()
    assert len(runs) == count
    assert all(len(job_runs) == 2 for job_runs in runs.values())  # one start, one done each
    by_pid = Counter(run.pid for run in app.runs() if run.event == "done")
    assert set(by_pid) == {first.pid, second.pid}, by_pid  # both did some
    completed = [
        int(stopped_line(w.log).split("completed ")[1].split(",")[0]) for w in (first, second)
    ]
    assert sum(completed) == count


# -- stopping on SIGTERM ------------------------------------------------------------------


async def test_sigterm_finishes_running_jobs_and_hands_back_the_rest(
    app: App, shared: Shared, workers: Workers
) -> None:
    options = ("--concurrency", "4", "--batch-size", "8", "--grace-period", "20")
    first = workers(shared, "first", *options)
    await first.logged("started:")
    count = 24
    async with embedded(shared) as system:
        queued = await system.enqueue_batch(work(*[0.5] * count))
        await until(lambda: app.count("start") >= 6)  # mid-batch: running, claimed, queued
        first.signal(signal.SIGTERM)
        assert await first.exit_code(within=20) == 0
        stopped = stopped_line(first.log)
        assert "(SIGTERM)" in stopped and "interrupted 0" in stopped
        assert "requeued 0" not in stopped, stopped  # claimed and not started: handed back
        second = workers(shared, "second", *options)
        await until(lambda: app.count("done") == count)
        second.signal(signal.SIGTERM)  # "done" is logged before the ack is stored;
        assert await second.exit_code() == 0  # a graceful stop stores it
        states = [(await system.info(job.id)).state for job in queued]
    assert states == [State.COMPLETED] * count
    runs = app.by_job()
    assert all([run.event for run in job_runs] == ["start", "done"] for job_runs in runs.values())
    done_by = Counter(run.pid for run in app.runs() if run.event == "done")
    assert set(done_by) == {first.pid, second.pid}


async def test_a_job_cut_by_the_grace_period_runs_again_and_a_finished_one_never_does(
    app: App, shared: Shared, workers: Workers
) -> None:
    options = ("--concurrency", "4", "--batch-size", "4", "--grace-period", "0.5")
    first = workers(shared, "first", *options)
    await first.logged("started:")
    async with embedded(shared) as system:
        quick = await system.enqueue_batch(work(*[0.01] * 8))
        await until(lambda: app.count("done") == 8)
        slow = await system.enqueue_batch(work(*[3.0] * 4))
        await until(lambda: app.count("start") == 8 + 4)
        first.signal(signal.SIGTERM)
        assert await first.exit_code(within=20) == 0
        assert "interrupted 4" in stopped_line(first.log)
        for job in slow:  # failed with a retryable ShutdownError: retried, not lost
            stored = await system.info(job.id)
            assert stored.state in (State.RETRYABLE, State.AVAILABLE)
            assert stored.errors[-1]["type"] == "ShutdownError"
        second = workers(shared, "second", *options)
        await until(lambda: app.count("done") == 8 + 4)
        states = [(await system.info(job.id)).state for job in [*quick, *slow]]
        second.signal(signal.SIGTERM)
        assert await second.exit_code(within=20) == 0
    assert states == [State.COMPLETED] * 12
    runs = app.by_job()
    for job in quick:  # finished and acknowledged by the first worker: never run again
        assert [(r.event, r.pid) for r in runs[job.id]] == [
            ("start", first.pid),
            ("done", first.pid),
        ]
    for job in slow:  # cut in the first worker, run again in full by the second
        assert [(r.event, r.pid, r.attempt) for r in runs[job.id]] == [
            ("start", first.pid, 1),
            ("start", second.pid, 2),
            ("done", second.pid, 2),
        ]


async def test_the_jobs_of_a_killed_worker_come_back_when_its_leases_run_out(
    app: App, shared: Shared, workers: Workers
) -> None:
    options = ("--concurrency", "2", "--visibility-timeout", "1")
    first = workers(shared, "first", *options)
    await first.logged("started:")
    async with embedded(shared) as system:
        queued = await system.enqueue_batch(work(1.5, 1.5))
        await until(lambda: app.count("start") == 2)
        await trio.sleep(1)  # past the first lease: the worker renewed it
        first.process.kill()  # SIGKILL: no outcome is stored
        await first.exit_code()
        second = workers(shared, "second", *options)
        await until(lambda: app.count("done") == 2)
        second.signal(signal.SIGTERM)  # "done" is logged before the ack is stored;
        assert await second.exit_code() == 0  # a graceful stop stores it
        states = [(await system.info(job.id)).state for job in queued]
    assert states == [State.COMPLETED] * 2
    runs = app.by_job()
    for job in queued:
        assert [(r.event, r.pid, r.attempt) for r in runs[job.id]] == [
            ("start", first.pid, 1),
            ("start", second.pid, 2),
            ("done", second.pid, 2),
        ]


async def test_a_second_signal_stops_the_worker_at_once(
    app: App, tmp_path: Path, workers: Workers
) -> None:
    """Also: a registry factory (``MODULE:function``), and options from the environment."""
    app.env |= {"OJS_WORKER_CONCURRENCY": "2", "OJS_WORKER_GRACE_PERIOD": "600",
                "OJS_WORKER_ID": "env-worker", "OJS_BACKEND": "sqlite",
                "OJS_DB": str(tmp_path / "ojs.db")}  # fmt: skip
    shared = Shared("sqlite", {"path": str(tmp_path / "ojs.db")})
    worker = WorkerProcess(app, Shared("sqlite"), "worker", target="handlers:make_jobs")
    workers.append(worker)
    await worker.logged("worker env-worker started: backend sqlite, queues work, concurrency 2")
    async with embedded(shared) as system:
        queued = await system.enqueue_batch(work(3600, 3600))
        await until(lambda: app.count("start") == 2)
        worker.signal(signal.SIGTERM)
        await worker.logged("SIGTERM again to stop at once")
        worker.signal(signal.SIGINT)
        assert await worker.exit_code(within=20) == 0
        assert "SIGINT again, stopping at once" in worker.log
        assert "(SIGTERM, at once)" in stopped_line(worker.log)
        assert "interrupted 2" in stopped_line(worker.log)
        for job in queued:
            stored: Job = await system.info(job.id)
            assert stored.state in (State.RETRYABLE, State.AVAILABLE)
            assert stored.errors[-1]["type"] == "ShutdownError"


# -- refusals -----------------------------------------------------------------------------


def assert_one_line(stderr: str, text: str) -> None:
    assert stderr.strip().splitlines() == [stderr.strip()], stderr
    assert stderr.startswith("ojs-actors worker: ") and text in stderr, stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("handlers", "expected MODULE:OBJECT"),
        ("no_such_module:jobs", "no module named 'no_such_module'"),
        ("handlers:no_such_object", "'handlers' has no attribute 'no_such_object'"),
        ("handlers:not_a_registry", "is no JobRegistry"),
    ],
)
def test_a_target_that_names_no_registry_exits_2_with_one_line(
    app: App, tmp_path: Path, target: str, message: str
) -> None:
    done = app.run(target, "--backend", "sqlite", "--db", str(tmp_path / "x.db"))
    assert done.returncode == 2
    assert_one_line(done.stderr, message)


def test_invalid_options_exit_2(app: App, tmp_path: Path) -> None:
    db = ("--backend", "sqlite", "--db", str(tmp_path / "x.db"))
    for option in (("--concurrency", "0"), ("--grace-period", "-1"), ("--queues", "Bad Name")):
        done = app.run("handlers:jobs", *db, *option)
        assert done.returncode == 2 and option[0] in done.stderr, done.stderr
    app.env["OJS_WORKER_BATCH_SIZE"] = "none"  # the environment is checked as the flag is
    done = app.run("handlers:jobs", *db)
    assert done.returncode == 2 and "--batch-size" in done.stderr


def test_the_memory_backend_is_refused(app: App) -> None:
    """Nothing stored by another process could reach a worker on its own memory."""
    done = app.run("handlers:jobs")  # no --backend, no OJS_BACKEND: memory
    assert done.returncode == 2
    assert_one_line(done.stderr, "the memory backend lives in one process")


def test_a_backend_that_cannot_be_reached_exits_1_with_one_line(app: App) -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    done = app.run("handlers:jobs", "--backend", "redis", "--redis-url", url)
    assert done.returncode == 1
    assert_one_line(done.stderr, "the redis backend failed")


def test_the_help_lists_the_worker_options(app: App) -> None:
    done = app.run("--help")
    assert done.returncode == 0
    for option in ("--backend", "--db", "--redis-url", "--queues", "--concurrency",
                   "--batch-size", "--grace-period", "--worker-id", "--visibility-timeout",
                   "--poll-interval"):  # fmt: skip
        assert option in done.stdout
