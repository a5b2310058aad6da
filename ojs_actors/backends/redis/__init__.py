"""The networked backend: one Redis server shared by any number of ``ojs-actors`` processes.

Parts. :class:`RedisBackend` (:mod:`.backend`) is an
:class:`~ojs_actors.backends.assembly.AssembledBackend` of parts that another backend
can reuse as they are:

* :class:`RedisConnection` (:mod:`.connection`): the URL, timeouts and key prefix, the
  client native to trio (:mod:`.client`), every script registered; the
  backend's lifetime (start, close, ping, and reset: deleting every key under the
  prefix). The other parts talk to Redis only through it, so it can be swapped.
* :class:`RedisJobs` (:mod:`.jobs`): job store, ready queue, timers and dead letter,
  one part because the scripts that write a job keep all their indexes together.
* :class:`RedisSnapshots` (:mod:`.snapshots`) and :class:`RedisEventLog` (:mod:`.events`,
  the outbox reader).

The Lua texts are in :mod:`.lua_jobs` (the job scripts), :mod:`.lua_outbox` (the outbox
append, included in every script that writes, and its read) and :mod:`.lua` (the others,
and ``SCRIPTS``: every script by name); :mod:`.records` encodes job records.

Calls. See :mod:`.connection`: calls are shielded from trio cancellation and bounded
by the client's timeouts; connection errors surface as :class:`~ojs_actors.core.BackendUnavailable`
(HTTP 503); the client does not retry on its own (a script whose reply was lost may have
run, and re-running it would not be idempotent).

Atomicity. Every state change is one Lua script (``EVALSHA`` of a registered
script, so two processes can never interleave inside one), and every protocol
call is one script call, whatever the batch size. Index maintenance lives in
the scripts: callers never touch an index, and the script that writes a job
appends its outbox entry (:mod:`ojs_actors.backends.outbox`) in the same step.
Python computes what is pure (the lifecycle transitions, unique-policy decisions,
timers) and the scripts check and write; the claim script applies the claim and
expiry transitions as :mod:`ojs_actors.core.lifecycle` plans them (target states
and error passed in), which the contract suite checks field for field.

Key layout (``prefix`` defaults to ``ojs:``; ``{q}`` is a queue name), by owning part::

    RedisJobs
    ojs:jobs            hash: job id -> record text, a JSON object mapping each key of
                        Job.to_record() to that value's own JSON text
    ojs:ready:{q}       zset of available job ids, score = -priority * 2**44 + seq
                        (ZPOPMIN gives priority-desc, then FIFO by seq)
    ojs:seq             counter handing out seq each time a job becomes available
    ojs:timers          zset job id -> min(timers_of(job)) of its current version,
                        kept eagerly by every write (so no stale entries)
    ojs:dead            zset of dead-lettered job ids, score = dead_seq (oldest first)
    ojs:deadq:{q}       the same per queue
    ojs:dead_seq        counter for dead_seq
    ojs:counts:{q}      hash state -> number of jobs of the queue in that state
    ojs:unique          hash unique_key -> id of the job that last took it
    ojs:rate:{q}        zset of the queue's claims (job id _ version) by claim time, the
                        rate limit's window (claims older than it are removed first)

    RedisSnapshots
    ojs:snapshots       hash snapshot key -> JSON (queue:<name>, cron:…, workflow:…)
    ojs:snaporder       zset snapshot key -> first-save order (listing order)
    ojs:snapver         hash snapshot key -> version, bumped by every save (CAS saves)
    ojs:snapkind:{k}    zset of the snapshot keys starting ``{k}`` (``cron:``, ``queue:``,
                        ``workflow:``), same scores: listing one kind reads only it
    ojs:snapindexed     set once the snapkind indexes cover every key (built lazily)
    ojs:snapseq         counter for snaporder

    the outbox (appended by RedisJobs and RedisSnapshots, read by RedisEventLog)
    ojs:outbox          list of entry texts "key\nbefore\nrecord or event JSON",
                        capped to the newest event_retention
    ojs:outseq          counter: the seq of the newest entry (the list holds the
                        seqs outseq - LLEN + 1 .. outseq)
    ojs:outkeys         zset entry key (job id _ version, or an event id) -> seq,
                        trimmed with the list: a read ``after`` an event starts at its
                        entry instead of scanning the log
    ojs:outhold         seq of the entry before the last one an external relay took;
                        entries after it are never trimmed (set by the kafka backend
                        only, through RedisEventLog.hold_outbox)

Why one hash of records, each a JSON object of JSON texts: a batch of n new jobs
is one ``HSET`` of all their records (plus one command per index), so Redis runs
a handful of commands per batch instead of n (``INFO`` counts the commands scripts
run too); every read of n records is one ``HMGET``. And because each value inside
a record is a string (the field's own JSON text), Lua's cjson can decode and
re-encode a record losslessly: the claim script rewrites exactly the fields a
claim changes (state, version, attempt, started_at, lease, worker) without
touching the user's payload (cjson would turn ``[]`` into ``{}`` and round
floats if it parsed those). So a claim is one round trip with no
compare-and-set retry loop, even when several processes fetch from one queue.

Scripts: ``insert`` (new jobs + unique index + cancelling replaced holders,
guarded by the unique-index state read before planning; ``atomic`` batches
all or nothing), ``update`` (compare-and-set on ``version``), ``claim``,
``delete_dead`` / ``delete_jobs`` (finished jobs, compare-and-set), ``save_snapshot``
(optionally compare-and-set on the snapshot's version, with events for the outbox) /
``delete_snapshot``, ``reset``; reads
that touch several keys (``peek``, ``get``, ``due``, ``dead_page``,
``load_snapshot`` with its version, ``list_snapshots``, ``read_outbox``) are scripts too, so each is
one consistent round trip; single-key reads (a queue's counts, the first timer, one
snapshot) are plain commands. The admin job listing (``RedisJobs.list_jobs``) keeps no
index of its own: it walks ``jobs`` with ``HSCAN``, a bounded step per call. Scripts
name their keys from the prefix argument (not ``KEYS``), so the layout targets a single
Redis server, not Redis Cluster.
"""

from __future__ import annotations

from .backend import RedisBackend
from .connection import DEFAULT_PREFIX, DEFAULT_URL, RedisConnection
from .events import RedisEventLog
from .jobs import MAX_INSERT_ATTEMPTS, RedisJobs
from .snapshots import RedisSnapshots

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_URL",
    "MAX_INSERT_ATTEMPTS",
    "RedisBackend",
    "RedisConnection",
    "RedisEventLog",
    "RedisJobs",
    "RedisSnapshots",
]
