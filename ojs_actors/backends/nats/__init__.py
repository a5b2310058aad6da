"""The NATS backend: one NATS JetStream (nats-server >= 2.12) shared by any number of
``ojs-actors`` processes, reached through a client native to trio.

Parts. :class:`NatsBackend` (:mod:`.backend`) is an
:class:`~ojs_actors.backends.assembly.AssembledBackend` of:

* :class:`NatsStore` (:mod:`.connection`): the client, the streams (created or updated
  at start), the version check, and the calls the parts share; the backend's lifetime.
* :class:`NatsJobs` (:mod:`.jobs`): job store, ready queue, timers and dead letter, one
  part because one atomic batch writes a job version with all its index entries.
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
job records and purge the stale ones they pass (:mod:`.jobs`).
"""

from __future__ import annotations

from .backend import NatsBackend
from .connection import DEFAULT_URL, MINIMUM_VERSION, NatsStore
from .events import NatsEventLog
from .jobs import NatsJobs
from .snapshots import NatsSnapshots

__all__ = [
    "DEFAULT_URL",
    "MINIMUM_VERSION",
    "NatsBackend",
    "NatsEventLog",
    "NatsJobs",
    "NatsSnapshots",
    "NatsStore",
]
