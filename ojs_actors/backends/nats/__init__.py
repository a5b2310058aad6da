"""The NATS backend: one NATS JetStream (nats-server >= 2.12) shared by any number of
``ojs-actors`` processes, reached through a client native to trio.

Parts. :class:`NatsBackend` (:mod:`.backend`) is an
:class:`~ojs_actors.backends.assembly.AssembledBackend` of:

* :class:`NatsStore` (:mod:`.connection`): the client, the streams (created or updated
  at start), the version check, and the calls the parts share; the backend's lifetime.
* :class:`JobRecords` (:mod:`.records`): what the job parts share: reading job records,
  remembering their versions, writing atomic batches (one writes a job version with all
  its index entries) and what follows a write (ready notices, outbox, count folding).
* On it: :class:`NatsJobs` (:mod:`.jobs`, the job store), :class:`NatsReadyQueue`
  (:mod:`.claims`, the ready queue and ready notices), :class:`NatsTimers`
  (:mod:`.timers`) and :class:`NatsDeadLetter` (:mod:`.dead_letter`).
* :class:`NatsSnapshots` (:mod:`.snapshots`) and :class:`NatsEventLog` (:mod:`.events`,
  the outbox reader, which also trims it).

Below them: :mod:`.protocol` (the NATS wire format, no I/O), :mod:`.client`
(:class:`~.client.NatsClient`, a pool of connections, no asyncio), :mod:`.jetstream`
(the JetStream API calls), :mod:`.layout` (subjects and stream settings: the layout is
documented there) and :mod:`.writes` (the atomic batches, no I/O).

Atomicity. A job write is one atomic batch of one stream: the job's record guarded by
``Nats-Expected-Last-Subject-Sequence`` (compare-and-set on the record's revision), its
ready, timer and dead-letter entries, its outbox entry, the queue's count delta. Either
all of it is stored or none, so no crash can leave a job without its index entries or
its events. Index entries are never updated in place: readers check them against the
job records and purge the stale ones they pass (:mod:`.claims`, :mod:`.timers`,
:mod:`.dead_letter`).

Crash windows. What remains between two stores, each with its named crash point
(:mod:`ojs_actors.backends.faults`; ``tests/test_nats_crash_windows.py`` kills a loaded
server in each and checks that nothing is lost and no acknowledged job runs again):

* ``nats.insert.stored``: an enqueue's batch stored, its reply not sent. The job runs; a
  client sending it again with its own id gets 409.
* ``nats.claim.stored``: a claim's batch stored, the lane's head not purged, the jobs
  not handed over. They come back when their lease runs out; their ready entries are
  stale, skipped and purged by a later claim.
* ``nats.claim.purged``: the consumed heads purged (with the next claim's first round
  trip). Nothing is left to repair.
* ``nats.update.stored``: an ack's batch stored, its reply not sent. The job is
  completed and never fetched again; a retried ack is refused as a conflict.
* ``nats.dead.deleted``: a dead-letter delete stored (empty record), its subjects not
  purged. The empty record reads as missing; listing the dead letter purges leftovers.
* The event relay: events published, the cursor not committed. They are published
  again and dropped by ``Nats-Msg-Id``.
"""

from __future__ import annotations

from .backend import NatsBackend
from .claims import NatsReadyQueue
from .connection import DEFAULT_URL, MINIMUM_VERSION, NatsStore
from .dead_letter import NatsDeadLetter
from .events import NatsEventLog
from .jobs import NatsJobs
from .records import JobRecords
from .snapshots import NatsSnapshots
from .timers import NatsTimers

__all__ = [
    "DEFAULT_URL",
    "MINIMUM_VERSION",
    "JobRecords",
    "NatsBackend",
    "NatsDeadLetter",
    "NatsEventLog",
    "NatsJobs",
    "NatsReadyQueue",
    "NatsSnapshots",
    "NatsStore",
    "NatsTimers",
]
