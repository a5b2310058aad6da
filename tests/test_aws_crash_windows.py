"""The AWS backend's crash windows: the server process dies at each named crash point
(:mod:`ojs_actors.backends.faults`) under a stream of enqueues, fetches and acks, is
restarted on the same DynamoDB table and SQS queues (the session's moto server), and
every job must still complete exactly as promised (``crash_windows.py`` checks it: none
lost, no acked job fetched again, jobs claimed for a lost answer back after their
visibility timeout, the queue empty in the end).

The windows, one test each (``ojs_actors/backends/aws``): an insert's transaction
stored, before its SQS hints are sent and before the reply (the job is claimed all the
same: claims read DynamoDB's ready index, and the reconciler re-sends lost hints); a
claim's transaction stored, before the reply (the jobs are active with a lease that
runs out); an update's (an ack's) transaction stored, before the hints and the reply.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from crash_windows import check_crash_window
from serving import aws_env

POINTS = ("aws.insert.stored", "aws.claim.stored", "aws.update.stored")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_in_the_window_loses_nothing_and_reruns_no_acked_job(
    point: str, aws_options: dict[str, Any], tmp_path: Path
) -> None:
    check_crash_window(point, ["--backend", "sqs"], aws_env(aws_options), tmp_path)
