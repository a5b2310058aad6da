"""The figures of chaos runs, as the Markdown table the README shows."""

from __future__ import annotations

from collections.abc import Sequence

from ._run import Report

FAULT_KINDS = ("actor_kill", "sigkill", "cut", "delay", "reset")


def _recovery(report: Report) -> str:
    parts = [
        f"{kind} {median:.2f} / {top:.2f}" for kind, (median, top) in report.recovery().items()
    ]
    return ", ".join(parts) or "-"


def table(reports: Sequence[Report]) -> str:
    lines = [
        "| backend | jobs | faults (actor kills / SIGKILL / cut / delay / reset) | lost (unfinished) "
        "| acked run again | run twice, not acked | cron slots (dup) | workflows (unfinished) "
        "| recovery s, median / max | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        verdict = report.verdict
        injected = report.faults.injected
        faults = " / ".join(
            str(report.actor_kills_done if kind == "actor_kill" else injected.get(kind, 0))
            for kind in FAULT_KINDS
        )
        lines.append(
            f"| {report.plan.backend} | {verdict.jobs} | {faults} "
            f"| {len(verdict.lost)} ({len(verdict.unfinished)}) "
            f"| {len(verdict.acked_ran_again)} | {verdict.ran_twice_unacked} "
            f"| {verdict.cron_slots_fired} ({len(verdict.duplicate_cron_slots)}) "
            f"| {verdict.workflows} ({len(verdict.workflows_unfinished)}) "
            f"| {_recovery(report)} | {'ok' if report.ok else 'FAILED'} |"
        )
    return "\n".join(lines)
