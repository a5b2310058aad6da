"""The OJS error vocabulary: one exception type per wire error code.

Every error that can reach a client is an :class:`OJSError`. It carries the
wire ``code``, the HTTP status of the HTTP binding, whether the client may
retry, and structured ``details``. The HTTP layer renders it; the embedded
API raises it as is.
"""

from __future__ import annotations

from typing import Any, ClassVar

DOCS_BASE = "https://openjobspec.org/spec/v1"


class OJSError(Exception):
    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    retryable: ClassVar[bool] = True
    docs: ClassVar[str] = "ojs-http-binding#16-errors"
    default_hint: ClassVar[str] = "Retry the request; if it keeps failing, check the server logs."

    def __init__(
        self, message: str, *, details: dict[str, Any] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.hint = hint or self.default_hint

    def response_headers(self) -> dict[str, str]:
        """HTTP headers the error's response carries besides the body (``Retry-After``
        of a 429); none by default."""
        return {}

    def to_wire(self, request_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "type": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "hint": self.hint,
            "docs_url": f"{DOCS_BASE}/{self.docs}",
        }
        if self.details:
            body["details"] = self.details
        if request_id is not None:
            body["request_id"] = request_id
        return {"error": body}


class InvalidRequest(OJSError):
    """Malformed request: wrong JSON types, missing fields, bad formats."""

    code = "invalid_request"
    status = 400
    retryable = False
    docs = "ojs-core#5-job-envelope"
    default_hint = "Fix the request as described in 'details' and send it again."


class InvalidPayload(InvalidRequest):
    """The body is not a JSON object at all."""

    code = "invalid_payload"
    default_hint = "Send a JSON object encoded as UTF-8."


class InvalidWorkflow(InvalidRequest):
    """A workflow definition that breaks ojs-workflows; ``details.validation_errors``
    lists every violation as ``{"path": "$.steps[1].type", "message": …}``."""

    code = "invalid_workflow"
    docs = "ojs-workflows#111-create-workflow"
    default_hint = "Fix every entry of 'details.validation_errors' and send the workflow again."


class ValidationFailed(OJSError):
    """Well-formed request whose values break a rule (ranges, retry policy rules)."""

    code = "validation_error"
    status = 422
    retryable = False
    docs = "ojs-retry#11-retry-policy-validation"
    default_hint = "Change the offending value to one the rule in 'details' allows."


class PayloadTooLarge(OJSError):
    code = "envelope_too_large"
    status = 413
    retryable = False
    docs = "ojs-json-format#8-size-limits-and-recommendations"
    default_hint = "Keep envelopes small: pass references to data, not the data itself."


class UnsupportedMediaType(InvalidRequest):
    default_hint = "Send 'Content-Type: application/openjobspec+json' (or application/json)."


class NotFound(OJSError):
    code = "not_found"
    status = 404
    retryable = False
    docs = "ojs-http-binding#9-job-endpoints"
    default_hint = "Check the identifier; jobs removed by a reset or a dead-letter delete are gone."


class Duplicate(OJSError):
    code = "duplicate"
    status = 409
    retryable = False
    docs = "ojs-unique-jobs"
    default_hint = "A job with this id already exists; fetch it with GET /ojs/v1/jobs/{id}."


class Conflict(OJSError):
    """An operation the job's current state does not allow (illegal transition)."""

    code = "conflict"
    status = 409
    retryable = False
    docs = "ojs-core#6-job-lifecycle-state-machine"
    default_hint = "Read the job's current state with GET /ojs/v1/jobs/{id} before acting on it."


class QueuePaused(OJSError):
    code = "queue_paused"
    status = 422
    retryable = True
    docs = "ojs-http-binding#113-pause-queue"
    default_hint = "Resume the queue with POST /ojs/v1/queues/{name}/resume."


class QueueFull(OJSError):
    """A bounded queue is at its depth bound (ojs-backpressure §7.1, ojs-error-catalog
    OJS-6001): the job is not stored. The wire code is the catalog's upper-case one,
    which the ext-backpressure suite checks."""

    code = "QUEUE_FULL"
    status = 429
    retryable = True
    docs = "ojs-backpressure#71-rejection-response"
    default_hint = "Retry after the Retry-After header's seconds, with backoff."

    def __init__(
        self,
        queue: str,
        depth: int,
        bound: int,
        *,
        retry_after: int = 1,
        strategy: str = "reject",
        size: tuple[int, int] | None = None,
    ) -> None:
        """``size``: ``(bytes, max_size_bytes)`` when the size bound refused it (``bound``
        is then the depth bound, 0 if none)."""
        details: dict[str, Any] = {"queue": queue, "depth": depth, "bound": bound}
        message = f"Queue '{queue}' has reached its depth bound ({bound})."
        if size is not None:
            details |= {"size_bytes": size[0], "max_size_bytes": size[1]}
            message = f"Queue '{queue}' has reached its size bound ({size[1]} bytes)."
        super().__init__(message, details={**details, "strategy": strategy})
        self.size = size
        self.queue = queue
        self.strategy = strategy
        self.job_type: str | None = None
        """The type of the refused enqueue's (first) job, for ``backpressure.rejected``."""
        self.depth = depth
        self.bound = bound
        self.retry_after = retry_after

    def response_headers(self) -> dict[str, str]:
        headers = {"Retry-After": str(self.retry_after), "X-OJS-Queue-Depth": str(self.depth)}
        if self.bound:
            headers["X-OJS-Queue-Bound"] = str(self.bound)
        if self.size is not None:
            headers["X-OJS-Queue-Size-Bytes"] = str(self.size[0])
            headers["X-OJS-Queue-Size-Bound"] = str(self.size[1])
        return headers


class TenantLimitExceeded(OJSError):
    """A tenant is at one of its resource limits (ojs-multi-tenancy §8.2): the enqueue is
    refused, nothing stored. The body carries ``tenant_id``, ``limit``, ``current`` and
    ``maximum`` in the error object as §8.2 shows them (and in ``details``)."""

    code = "TENANT_LIMIT_EXCEEDED"
    status = 429
    retryable = True
    docs = "ojs-multi-tenancy#82-enqueue-rejection"
    default_hint = "Retry after the Retry-After header's seconds, or raise the tenant's limit."

    def __init__(
        self, tenant: str, limit: str, current: int, maximum: int, *, retry_after: int = 1
    ) -> None:
        super().__init__(
            f"Tenant '{tenant}' has exceeded {limit} ({maximum}).",
            details={"tenant_id": tenant, "limit": limit, "current": current, "maximum": maximum},
        )
        self.retry_after = retry_after

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}

    def to_wire(self, request_id: str | None = None) -> dict[str, Any]:
        wire = super().to_wire(request_id)
        wire["error"].update(self.details)
        return wire


class Unsupported(OJSError):
    code = "unsupported"
    status = 422
    retryable = False
    docs = "ojs-conformance"
    default_hint = "This server does not implement that feature; see GET /ojs/manifest."


class BackendUnavailable(OJSError):
    code = "backend_unavailable"
    status = 503
    retryable = True
    docs = "ojs-http-binding#81-health-check"
    default_hint = "The storage backend is unreachable; retry with backoff."


class OutboxFull(BackendUnavailable):
    """New work is refused: the events waiting for the event relay's sink (Kafka) reached
    their limit while it was away. Jobs already accepted go on running."""

    default_hint = (
        "The event sink is behind; retry with backoff once it has caught up "
        "(GET /ojs/v1/health shows the backlog)."
    )


class ServiceRestarting(OJSError):
    """The actor handling the request crashed or stopped before it answered."""

    code = "backend_error"
    status = 503
    retryable = True
    default_hint = (
        "The request may or may not have been applied; check the job's state, then retry."
    )


class Unauthenticated(OJSError):
    """No valid API key (ojs-error-catalog OJS-5000)."""

    code = "unauthenticated"
    status = 401
    retryable = False
    docs = "ojs-http-binding#5-authentication-and-authorization"
    default_hint = "Send the header 'Authorization: Bearer <key>' with a key the server accepts."


class RequestTimedOut(OJSError):
    """The server could not answer within the request's deadline (ojs-error-catalog OJS-1012)."""

    code = "request_timeout"
    status = 503
    retryable = True
    default_hint = "Retry with backoff; if it keeps happening, check the backend's health."


class BodyTimedOut(RequestTimedOut):
    """The client did not send the whole request body in time."""

    status = 408
    default_hint = "Send the whole body promptly; retry the request."


class InternalError(OJSError):
    code = "internal_error"
    status = 500
    retryable = True
