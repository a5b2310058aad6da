"""The NATS backend's crash windows: the server process dies at each named crash point
(:mod:`ojs_actors.backends.faults`) under a stream of enqueues, fetches and acks, is
restarted on the same NATS, and every job must still complete exactly as promised
(``crash_windows.py`` checks it: none lost, no acked job fetched again, jobs claimed for
a lost answer back after their visibility timeout, the queue empty in the end).

The windows, one test each (README, "NATS backend"): after an insert's batch is stored
and before the reply; after a claim's batch is stored and before its lane's head is
purged; after that purge and before the jobs reach the worker; after an ack's batch is
stored and before the reply.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NatsServer
from crash_windows import check_crash_window

POINTS = ("nats.insert.stored", "nats.claim.stored", "nats.claim.purged", "nats.update.stored")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

_streams = itertools.count()


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(tmp_path_factory.mktemp("crash-nats")) as server:
        yield server


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_in_the_window_loses_nothing_and_reruns_no_acked_job(
    point: str, nats: NatsServer, tmp_path: Path
) -> None:
    n = next(_streams)
    env = {
        "NATS_URL": nats.url,
        "OJS_NATS_BATCH_MAX": str(NatsServer.batch_max_msgs),
        "OJS_NATS_STREAM": f"CRASH{n}",
        "OJS_NATS_PREFIX": f"crash{n}",
    }
    check_crash_window(point, ["--backend", "nats"], env, tmp_path)
