"""What the harness knows about every job it caused, and the checks made of it at the end.

A job enters the ledger when the harness asks for it (an enqueue, a batch, a workflow) or,
for jobs the server makes (workflow steps, cron occurrences), when a worker first gets it.
Workers record each run (the attempt the server gave it and when) and each ack the server
confirmed with a 2xx. The checks (:meth:`Ledger.verdict`, with the final states read from
the server):

* **lost**: a job whose enqueue got a 2xx that the server does not hold, or one it holds
  (accepted, or of unknown fate) that ended other than ``completed``;
* **unfinished**: one still waiting or running when the drain gave up (too slow a store,
  or stuck);
* **acknowledged job ran again**: a run handed out after the job's ack was confirmed (an
  HTTP fetch sent after it), or a run of a later attempt than the one that completed it;
* **ran twice, not acknowledged**: runs beyond what the job's planned failures explain
  (at-least-once: allowed, counted);
* **events**: every completed job has its ``job.completed`` event;
* **cron**: no slot fired twice (two jobs with the same ``cron_triggered_at``);
* **workflows**: each one completed, and no step ran before the steps it depends on
  completed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Run:
    attempt: int
    at_ms: int
    worker: str
    fetch_sent_ms: int | None = None
    """When the HTTP fetch that handed it out was sent (``None`` for the embedded group)."""


@dataclass
class Entry:
    id: str
    kind: str
    fail_times: int = 0
    """Attempts the worker fails on purpose before it succeeds (retried jobs)."""
    accepted: bool | None = None
    """``True``: the enqueue got a 2xx; ``None``: its answer was lost (unknown)."""
    acked_ms: int | None = None
    runs: list[Run] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Workflow:
    id: str
    kind: str
    """``chain`` or ``dag``."""


@dataclass
class Verdict:
    jobs: int
    jobs_run: int
    lost: list[str]
    unfinished: list[str]
    acked_ran_again: list[str]
    ran_twice_unacked: int
    missing_completed_events: list[str]
    duplicate_cron_slots: list[str]
    cron_slots_fired: int
    workflows: int
    workflows_unfinished: list[str]
    workflow_order_violations: list[str]

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.unfinished
            or self.acked_ran_again
            or self.missing_completed_events
            or self.duplicate_cron_slots
            or self.workflows_unfinished
            or self.workflow_order_violations
        )


class Ledger:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.workflows: list[Workflow] = []
        self.acked_ran_again: set[str] = set()

    def asked(self, job_id: str, kind: str, fail_times: int = 0) -> Entry:
        entry = self.entries[job_id] = Entry(job_id, kind, fail_times)
        return entry

    def answered(self, job_ids: list[str], accepted: bool | None) -> None:
        """The enqueue of ``job_ids`` got a 2xx (``True``), a refusal (``False``: the jobs
        are forgotten), or no answer (``None``)."""
        for job_id in job_ids:
            if accepted is False:
                self.entries.pop(job_id, None)
            else:
                self.entries[job_id].accepted = accepted

    def ran(self, job: dict[str, Any], worker: str, now_ms: int, fetch_sent_ms: int | None) -> int:
        """A worker got ``job`` (its wire form) to run; the attempts it should fail."""
        entry = self.entries.get(job["id"])
        if entry is None:  # made by the server: a workflow step or a cron occurrence
            meta = job.get("meta") or {}
            kind = "cron" if "cron_name" in meta else "step"
            entry = self.entries[job["id"]] = Entry(job["id"], kind, accepted=True, meta=meta)
        if (
            fetch_sent_ms is not None
            and entry.acked_ms is not None
            and fetch_sent_ms > entry.acked_ms
        ):
            self.acked_ran_again.add(entry.id)
        entry.runs.append(Run(int(job.get("attempt") or 0), now_ms, worker, fetch_sent_ms))
        return entry.fail_times

    def acked(self, job_id: str, now_ms: int) -> None:
        entry = self.entries.get(job_id)
        if entry is not None and entry.acked_ms is None:
            entry.acked_ms = now_ms

    def to_check(self) -> list[str]:
        """The jobs whose final state matters: accepted, or of unknown fate."""
        return [job_id for job_id, entry in self.entries.items() if entry.accepted is not False]

    def verdict(
        self,
        final: dict[str, dict[str, Any] | None],
        completed_events: set[str],
        workflow_steps: dict[str, list[dict[str, Any]] | None],
    ) -> Verdict:
        """``final``: each checked job's wire form as the server has it at the end
        (``None``: not found; a job left out could not be read); ``completed_events``: the job ids with a ``job.completed``
        event; ``workflow_steps``: each workflow's steps (``id``, ``job_id``,
        ``depends_on``, ``state``), ``None`` if it did not finish."""
        lost: list[str] = []
        unfinished: list[str] = []
        again = set(self.acked_ran_again)
        twice = 0
        missing_events: list[str] = []
        for job_id, entry in self.entries.items():
            if job_id not in final:
                if entry.accepted:
                    unfinished.append(f"{job_id} (never read)")
                continue
            job = final[job_id]
            if job is None:
                if entry.accepted:
                    lost.append(job_id)
                continue
            if job.get("state") != "completed":
                terminal = job.get("state") in ("cancelled", "discarded")
                (lost if terminal else unfinished).append(f"{job_id} ({job.get('state')})")
                continue
            completing = int(job.get("attempt") or 0)
            if any(run.attempt > completing for run in entry.runs):
                again.add(job_id)
            extra = len(entry.runs) - (entry.fail_times + 1)
            if extra > 0:
                twice += 1
            if job_id not in completed_events:
                missing_events.append(job_id)
        slots = Counter(
            entry.meta.get("cron_triggered_at")
            for entry in self.entries.values()
            if entry.kind == "cron"
        )
        stalled = [wf for wf, steps in workflow_steps.items() if steps is None]
        order = [
            f"{wf}:{step['id']}"
            for wf, steps in workflow_steps.items()
            for step in steps or ()
            if not self._started_after(step, steps or [], final)
        ]
        return Verdict(
            jobs=len(final),
            jobs_run=sum(1 for entry in self.entries.values() if entry.runs),
            lost=lost,
            unfinished=unfinished,
            acked_ran_again=sorted(again),
            ran_twice_unacked=twice,
            missing_completed_events=missing_events,
            duplicate_cron_slots=sorted(str(slot) for slot, n in slots.items() if n > 1),
            cron_slots_fired=len(slots),
            workflows=len(workflow_steps),
            workflows_unfinished=stalled,
            workflow_order_violations=order,
        )

    def _started_after(
        self,
        step: dict[str, Any],
        steps: list[dict[str, Any]],
        final: dict[str, dict[str, Any] | None],
    ) -> bool:
        """Whether ``step``'s first run came after every step it depends on completed."""
        entry = self.entries.get(step.get("job_id") or "")
        if entry is None or not entry.runs:
            return True  # never run here (nothing to order)
        first = min(run.at_ms for run in entry.runs)
        by_id = {other["id"]: other for other in steps}
        for dependency in step.get("depends_on") or ():
            job = final.get(by_id.get(dependency, {}).get("job_id") or "")
            completed_at = (job or {}).get("completed_at_ms")
            if completed_at is None or first < completed_at:
                return False
        return True
