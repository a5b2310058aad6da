"""The AWS backend's settings, declared once: the backend's registry entry and
``ojs-actors aws-setup`` both take :data:`AWS_OPTIONS`.

The variables and defaults are ojs-backend-sqs's (``AWS_REGION``, ``AWS_ENDPOINT_URL``,
``DYNAMODB_TABLE``, ``SQS_QUEUE_PREFIX``, ``SQS_USE_FIFO``); credentials come from the
standard AWS chain (environment, profile, container or instance role), never a flag.
"""

from __future__ import annotations

import re

from ..options import BackendOption, positive_float

TABLE_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{3,255}")
"""DynamoDB's rule for a table name."""

QUEUE_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_\-]{1,40}")
"""SQS's characters; at most 40, so a queue's SQS name keeps at least 34 characters of
its own within SQS's 80 (:func:`~ojs_actors.backends.aws.setup.sqs_queue_name`)."""


def endpoint_url(text: str) -> str | None:
    """``AWS_ENDPOINT_URL``: an emulator's ``http(s)://host:port``; empty means real AWS."""
    url = text.strip()
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL (or nothing), not {text!r}")
    return url


def table_name(text: str) -> str:
    if not TABLE_PATTERN.fullmatch(text):
        raise ValueError(
            f"expected 3 to 255 of A-Z, a-z, 0-9, '_', '-', '.' (a DynamoDB table name), "
            f"not {text!r}"
        )
    return text


def queue_prefix(text: str) -> str:
    if not QUEUE_PREFIX_PATTERN.fullmatch(text):
        raise ValueError(f"expected 1 to 40 of A-Z, a-z, 0-9, '_', '-', not {text!r}")
    return text


AWS_OPTIONS: tuple[BackendOption, ...] = (
    BackendOption(
        name="region",
        flag="--aws-region",
        env="AWS_REGION",
        default="us-east-1",
        help="AWS region of the DynamoDB table and the SQS queues",
    ),
    BackendOption(
        name="endpoint_url",
        flag="--aws-endpoint-url",
        env="AWS_ENDPOINT_URL",
        default=None,
        type=endpoint_url,
        help="an AWS API emulator (moto, LocalStack), e.g. http://127.0.0.1:5000; empty: real AWS",
    ),
    BackendOption(
        name="table",
        flag="--dynamodb-table",
        env="DYNAMODB_TABLE",
        default="ojs-jobs",
        type=table_name,
        help="DynamoDB table holding the jobs and their indexes (key pk + sk, strings)",
    ),
    BackendOption(
        name="queue_prefix",
        flag="--sqs-queue-prefix",
        env="SQS_QUEUE_PREFIX",
        default="ojs",
        type=queue_prefix,
        help="first part of each SQS queue's name: <prefix>-<queue>",
    ),
    BackendOption(
        name="fifo",
        flag="--sqs-use-fifo",
        env="SQS_USE_FIFO",
        default=False,
        type=bool,
        help="FIFO SQS queues (<prefix>-<queue>.fifo) instead of standard ones",
    ),
    BackendOption(
        name="timeout",
        flag="--aws-timeout",
        env="OJS_AWS_TIMEOUT",
        default=5.0,
        type=positive_float,
        help="seconds an AWS call may take before the request fails with 503",
    ),
)


__all__ = ["AWS_OPTIONS", "endpoint_url", "queue_prefix", "table_name"]
