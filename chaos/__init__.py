"""The chaos suite: a real workload against real servers on a real store, faults injected
at random points (actor kills, SIGKILL and restart, the store's connections cut, delayed
and reset through a proxy), and every job checked at the end against the harness's ledger.

``python -m chaos --backend redis`` (``make chaos`` runs every backend); the smoke version
(``--smoke``) runs in ``make test`` (``tests/test_chaos.py``). See chaos/README.md.
"""

from ._run import Plan, Report, run
from ._stores import BACKENDS
from ._workload import Pace

__all__ = ["BACKENDS", "Pace", "Plan", "Report", "run"]
