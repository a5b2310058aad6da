"""``python -m bench.peers.run --peer NAME ...``: one lifecycle run of one peer, one JSON line.

Run by the peer's own environment (``bench.peers.ensure_peer_env``) with the repository
root as working directory or on ``PYTHONPATH``. Libraries' own output goes to stderr; stdout
carries only the result, ``LifecycleResult.as_dict()``. Exits 0 whenever it printed a
result (a timed-out phase shows as ``ok: false``), 1 on an error (traceback on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys

from bench.peers import PEERS
from bench.peers._common import flush_db


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.run", description=__doc__)
    parser.add_argument("--peer", required=True, choices=PEERS)
    parser.add_argument("--redis-url", required=True, help="redis://127.0.0.1:PORT/DB")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--latency-jobs", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True, help="seconds, per phase")
    args = parser.parse_args()
    if args.jobs < 1 or args.latency_jobs < 1 or args.timeout <= 0:
        parser.error("--jobs and --latency-jobs must be at least 1, --timeout positive")

    # Per-job log lines at INFO would measure the log handler, not the queue.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result_stream = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        flush_db(args.redis_url)
        peer = importlib.import_module(f"bench.peers.{args.peer}")
        outcome = peer.run(args.redis_url, args.jobs, args.latency_jobs, args.timeout)
    result_stream.write(json.dumps(outcome.as_dict()) + "\n")
    result_stream.flush()
    sys.stderr.flush()
    # Some libraries leave non-daemon threads or atexit hooks that can block a normal exit.
    os._exit(0)


if __name__ == "__main__":
    main()
