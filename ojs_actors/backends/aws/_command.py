"""``ojs-actors aws-setup``: make the AWS backend's table (and SQS queues) if missing.

Exit codes: 0 all there (made now or found); 1 AWS could not be reached, refused a call,
or holds something the backend cannot use (each a one-line message); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import trio
from botocore.exceptions import ClientError

from ...core import BackendUnavailable, OJSError, parse_queue_name
from ..options import argparse_type, positive_float
from .client import AwsClients, AwsSettings, error_code
from .options import AWS_OPTIONS
from .setup import QUEUE_MISSING_CODES, SetupError, ensure_queue, ensure_table, sqs_queue_name

PROG = "ojs-actors aws-setup"


def build_parser(environ: Mapping[str, str] = os.environ) -> argparse.ArgumentParser:
    """The command's arguments (a :class:`ValueError` for a malformed environment variable)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Create the DynamoDB table of the AWS backend (key pk + sk, on-demand "
        "billing), and the SQS queues of the --queues given, unless they exist. Credentials "
        "come from the standard AWS chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, a role).",
    )
    for option in AWS_OPTIONS:
        option.add_to(parser, environ)
    parser.add_argument(
        "--queues",
        type=_queues,
        default=[],
        help="OJS queues whose SQS queues to create too, comma-separated (the backend also "
        "creates a queue's on first use)",
    )
    parser.add_argument(
        "--wait",
        type=argparse_type(positive_float),
        default=120.0,
        help="seconds to wait for a new table to become ACTIVE (default 120)",
    )
    return parser


async def aws_setup(args: argparse.Namespace, say: Callable[[str], None]) -> None:
    settings = AwsSettings(
        region=args.aws_region, endpoint_url=args.aws_endpoint_url, timeout=args.aws_timeout
    )
    async with AwsClients(settings).opened() as aws:
        table = await ensure_table(aws, args.dynamodb_table, wait=args.wait)
        done = "created" if table.created else "found"
        say(f"table {table.name}: {done} ({table.status}, {table.billing_mode}, key pk + sk)")
        for queue in args.queues:
            name = sqs_queue_name(args.sqs_queue_prefix, queue, args.sqs_use_fifo)
            existed = await _queue_exists(aws, name)
            url = await ensure_queue(aws, args.sqs_queue_prefix, queue, args.sqs_use_fifo)
            say(f"queue {queue}: {'found' if existed else 'created'} {name} ({url})")


async def _queue_exists(aws: AwsClients, name: str) -> bool:
    try:
        await aws.sqs("get_queue_url", QueueName=name)
    except ClientError as error:
        if error_code(error) in QUEUE_MISSING_CODES:
            return False
        raise
    return True


def main(argv: Sequence[str]) -> int:
    try:
        parser = build_parser()
    except ValueError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    where = args.aws_endpoint_url or f"AWS {args.aws_region}"
    try:
        trio.run(partial(aws_setup, args, print))
    except BackendUnavailable as error:
        return _fail(f"cannot reach {where}: {error.message}")
    except (SetupError, ClientError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return 130
    return 0


def _fail(message: str) -> int:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)  # one line, always
    return 1


def _queues(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        try:
            parse_queue_name(name)
        except OJSError as error:
            raise argparse.ArgumentTypeError(f"{name!r}: {error.message}") from None
    return names


__all__ = ["PROG", "aws_setup", "build_parser", "main"]
