"""``/ojs/v1/jobs/{id}/progress``: workers report a running job's progress, clients read
it (ojs-progress §7.1, §10). Reports are fire and forget: one for a job that is no
longer active is answered 200 with the progress as it stands (``"recorded": false``),
never an error (§6.1)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response
from werkzeug.http import http_date

from ...core import Job
from ...core.progress import parse_update
from ...system.progress import progress_body
from ..wire import json_body, ojs_response, ojs_system
from ._sse import refusal, stream_response

blueprint = Blueprint("progress", __name__)


def _answer(job: Job, recorded: bool | None = None) -> Response:
    body = progress_body(job)
    if recorded is not None:
        body["recorded"] = recorded
    headers = {"Cache-Control": "no-cache"}
    if body["progress"] is not None:
        headers["X-OJS-Progress"] = str(body["progress"])
    if body["updated_at"] is not None and job.progress is not None:
        headers["Last-Modified"] = http_date(job.progress["updated_at"] / 1000)
    return ojs_response(body, headers=headers)


@blueprint.route("/ojs/v1/jobs/<job_id>/progress", methods=["PUT", "POST"])
async def report_progress(job_id: str) -> Response:
    update = parse_update(json_body())
    job, recorded = await ojs_system().report_progress(job_id, update)
    return _answer(job, recorded)


@blueprint.get("/ojs/v1/jobs/<job_id>/progress")
async def job_progress(job_id: str) -> Response:
    return _answer(await ojs_system().info(job_id))


@blueprint.get("/ojs/v1/jobs/<job_id>/progress/stream")
async def progress_stream(job_id: str) -> Response:
    refused = refusal("progress")
    if refused is not None:
        return refused
    system = ojs_system()
    job = await system.info(job_id)  # 404 before the stream starts
    # the stream lasts until the job ends or the client leaves
    return stream_response(_frames(system.follow_progress(job)))


async def _frames(
    updates: AsyncIterator[tuple[str, dict[str, Any] | None]],
) -> AsyncIterator[bytes]:
    async for kind, body in updates:
        if body is None:
            yield b": heartbeat\n\n"
        else:
            yield f"event: {kind}\ndata: {json.dumps(body)}\n\n".encode()
