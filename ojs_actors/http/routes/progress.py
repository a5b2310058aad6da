"""``/ojs/v1/jobs/{id}/progress``: workers report a running job's progress, clients read
it (ojs-progress §7.1, §10). Reports are fire and forget: one for a job that is no
longer active is answered 200 with the progress as it stands (``"recorded": false``),
never an error (§6.1)."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response, request
from werkzeug.http import http_date

from ...core import InvalidRequest, Job
from ...core.progress import parse_update
from ...system.progress import progress_body
from ..middleware import allow_wait
from ..sse import MEDIA_TYPE as SSE_MEDIA_TYPE
from ..wire import error_response, json_body, ojs_response, ojs_system

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
    if not any(value == SSE_MEDIA_TYPE and q > 0 for value, q in request.accept_mimetypes):
        response = error_response(
            InvalidRequest(
                f"This endpoint streams progress: send 'Accept: {SSE_MEDIA_TYPE}'.",
                details={"accept": request.headers.get("Accept")},
            )
        )
        response.status_code = 406
        return response
    system = ojs_system()
    job = await system.info(job_id)  # 404 before the stream starts
    allow_wait(math.inf)  # the stream lasts until the job ends or the client leaves
    response = Response(_frames(system.follow_progress(job)), content_type=SSE_MEDIA_TYPE)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.timeout = None
    return response


async def _frames(
    updates: AsyncIterator[tuple[str, dict[str, Any] | None]],
) -> AsyncIterator[bytes]:
    async for kind, body in updates:
        if body is None:
            yield b": heartbeat\n\n"
        else:
            yield f"event: {kind}\ndata: {json.dumps(body)}\n\n".encode()
