"""The networked backend: one Redis server shared by any number of ``ojs-actors`` processes.

Bridge. redis-py's asyncio client runs on the shared asyncio bridge
(:mod:`ojs_actors.backends.bridge`), which :func:`~ojs_actors.backends.open_backend`
opens around the backend's lifetime (``needs_asyncio``); :meth:`RedisBackend.start`
takes it and :meth:`RedisBackend.close` closes the client on it before it closes.
Every call goes through :meth:`RedisBackend._run`, which runs one asyncio
coroutine on the bridge from whatever trio task calls it. The wait is
shielded from trio cancellation (a claim must not vanish between Redis and the
caller); socket timeouts keep it finite, and connection errors surface as
:class:`~ojs_actors.core.BackendUnavailable` (HTTP 503). The client does not
retry on its own: a script whose reply was lost may have run, and re-running it
would not be idempotent.

Atomicity. Every state change is one Lua script (``EVALSHA`` of a registered
script, so two processes can never interleave inside one), and every protocol
call is one script call, whatever the batch size. Index maintenance lives in
the scripts: callers never touch an index. Python computes what is pure (the
lifecycle transitions, unique-policy decisions, timers) and the scripts check
and write.

Key layout (``prefix`` defaults to ``ojs:``; ``{q}`` is a queue name)::

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
    ojs:snapshots       hash snapshot key -> JSON (queue:<name>, cron:…, workflow:…)
    ojs:snaporder       zset snapshot key -> first-save order (listing order)
    ojs:snapver         hash snapshot key -> version, bumped by every save (CAS saves)
    ojs:snapkind:{k}    zset of the snapshot keys starting ``{k}`` (``cron:``, ``queue:``,
                        ``workflow:``), same scores: listing one kind reads only it
    ojs:snapindexed     set once the snapkind indexes cover every key (built lazily)
    ojs:snapseq         counter for snaporder
    ojs:events          list of event JSON, capped to the newest event_log_size
    ojs:evseq           counter: the seq of the newest event (the list holds the
                        seqs evseq - LLEN + 1 .. evseq)
    ojs:evat            zset event id -> seq, trimmed with the list: a read
                        ``after`` an id starts there instead of scanning the log

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
``delete_dead``, ``save_snapshot`` (optionally compare-and-set on the
snapshot's version) / ``delete_snapshot``, ``append_events``, ``reset``; reads
that touch several keys (``peek``, ``get``, ``due``, ``dead_page``,
``load_snapshot`` with its version, ``list_snapshots``, ``read_events``) are scripts too, so each is
one consistent round trip. Scripts name their keys from the prefix argument
(not ``KEYS``), so the layout targets a single Redis server, not Redis Cluster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Coroutine, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio

from ..core import BackendUnavailable, Job, OJSError, State
from .base import (
    EVERY_CAPABILITY,
    Deduplicated,
    EventFilter,
    duplicate_id,
    plan_insert,
    replaced_by,
    timers_of,
)
from .bridge import AsyncioBridge, current_asyncio_bridge
from .memory import EVENT_LOG_SIZE

T = TypeVar("T")

DEFAULT_URL = "redis://localhost:6379"
DEFAULT_PREFIX = "ojs:"
MAX_INSERT_ATTEMPTS = 20

# -- Lua ------------------------------------------------------------------------------

# HMGET in chunks (Lua's unpack has a stack limit); missing fields come back false.
_HMGET_ALL = r"""
local function hmget_all(key, ids, first)
  local out = {}
  first = first or 1
  for j = first, #ids, 1000 do
    local part = redis.call('HMGET', key, unpack(ids, j, math.min(j + 999, #ids)))
    for k = 1, #part do out[#out + 1] = part[k] end
  end
  return out
end
"""

_PRELUDE = (
    _HMGET_ALL
    + r"""
local P = ARGV[1]
local JOBS = P .. 'jobs'
local function fmt(n) return string.format('%d', n) end
-- What the indexes need of a decoded record (nil if there is none).
local function index_of(r)
  if not r then return nil end
  local s = cjson.decode(r.state)
  return {v = tonumber(r.version), q = cjson.decode(r.queue), s = s,
          dl = (s == 'discarded' and r.dead_letter == 'true')}
end
local function old_of(id)
  local raw = redis.call('HGET', JOBS, id)
  if not raw then return nil end
  return index_of(cjson.decode(raw))
end
-- A record text with the seq Redis handed out (records of available jobs are
-- sent without one).
local function with_seq(r, seq) return string.sub(r, 1, -2) .. ',"seq":"' .. fmt(seq) .. '"}' end
-- Move job `id` from its old index entries (old may be nil) to those of `new`
-- ({q, s, p, d, dl}); returns the seq handed out if it became available, else -1.
local function reindex(id, old, new)
  if old then
    redis.call('HINCRBY', P .. 'counts:' .. old.q, old.s, -1)
    if old.s == 'available' then redis.call('ZREM', P .. 'ready:' .. old.q, id) end
  end
  redis.call('HINCRBY', P .. 'counts:' .. new.q, new.s, 1)
  local seq = -1
  if new.s == 'available' then
    seq = redis.call('INCR', P .. 'seq')
    redis.call('ZADD', P .. 'ready:' .. new.q, fmt(-new.p * 17592186044416 + seq), id)
  end
  if new.d >= 0 then
    redis.call('ZADD', P .. 'timers', fmt(new.d), id)
  else
    redis.call('ZREM', P .. 'timers', id)
  end
  local was_dead = old and old.dl
  if was_dead and not (new.dl and old.q == new.q) then
    redis.call('ZREM', P .. 'dead', id)
    redis.call('ZREM', P .. 'deadq:' .. old.q, id)
  end
  if new.dl and not (was_dead and old.q == new.q) then
    local n = redis.call('INCR', P .. 'dead_seq')
    redis.call('ZADD', P .. 'dead', n, id)
    redis.call('ZADD', P .. 'deadq:' .. new.q, n, id)
  end
  return seq
end
-- Write a whole job version (op = {id, r = record text, q, s, p, d, dl}).
local function store(op, old)
  local seq = reindex(op.id, old, op)
  local r = op.r
  if seq >= 0 then r = with_seq(r, seq) end
  redis.call('HSET', JOBS, op.id, r)
  return seq
end
-- Run `command key list...` in chunks (Lua's unpack has a stack limit).
local function chunked(command, key, list)
  for j = 1, #list, 1000 do
    redis.call(command, key, unpack(list, j, math.min(j + 999, #list)))
  end
end
"""
)

_INSERT = (
    _PRELUDE
    + r"""
local spec = cjson.decode(ARGV[2])
for i, op in ipairs(spec.ops) do op.r = ARGV[2 + i] end
for _, g in ipairs(spec.guards) do
  local holder = redis.call('HGET', P .. 'unique', g[1])
  if g[2] == '' then
    if holder then return {'retry'} end
  else
    if holder ~= g[2] then return {'retry'} end
    local old = old_of(holder)
    if (old and old.v or -1) ~= g[3] then return {'retry'} end
  end
end
local results = {}
local dup = false
local new_ids, new_index = {}, {}
for i, op in ipairs(spec.ops) do
  results[i] = 0
  if op.e < 0 then
    new_ids[#new_ids + 1] = op.id
    new_index[#new_index + 1] = i
  end
end
-- one HMGET for the whole batch tells which ids are taken
local found = hmget_all(JOBS, new_ids)
for k = 1, #new_ids do
  if found[k] then
    if spec.strict then return {'retry'} end
    results[new_index[k]] = -2
    dup = true
  end
end
if dup and spec.atomic then return {'done', results} end
-- New jobs' records and index entries are collected and written with one command
-- per key (records, each index, each queue's counts) at the end, or before any
-- write that reads them (cancelling a replaced holder).
local fresh = 0
for i, op in ipairs(spec.ops) do
  if results[i] ~= -2 and op.e < 0 and op.s == 'available' then fresh = fresh + 1 end
end
local next_seq = 0
if fresh > 0 then next_seq = redis.call('INCRBY', P .. 'seq', fresh) - fresh end
local records, counts, ready, timers, uniques = {}, {}, {}, {}, {}
local function flush()
  chunked('HSET', JOBS, records)
  for name, n in pairs(counts) do
    redis.call('HINCRBY', P .. 'counts:' .. n[1], n[2], n[3])
  end
  for queue, entries in pairs(ready) do
    chunked('ZADD', P .. 'ready:' .. queue, entries)
  end
  chunked('ZADD', P .. 'timers', timers)
  chunked('HSET', P .. 'unique', uniques)
  records, counts, ready, timers, uniques = {}, {}, {}, {}, {}
end
for i, op in ipairs(spec.ops) do
  if results[i] ~= -2 then
    if op.e >= 0 or op.dl then
      flush()
      local old = nil
      if op.e >= 0 then
        old = old_of(op.id)
        if not old or old.v ~= op.e then return redis.error_reply('insert: holder changed') end
      end
      results[i] = store(op, old)
    else
      local r = op.r
      results[i] = -1
      if op.s == 'available' then
        next_seq = next_seq + 1
        results[i] = next_seq
        r = with_seq(r, next_seq)
        local entries = ready[op.q] or {}
        entries[#entries + 1] = fmt(-op.p * 17592186044416 + next_seq)
        entries[#entries + 1] = op.id
        ready[op.q] = entries
      end
      records[#records + 1] = op.id
      records[#records + 1] = r
      local name = op.q .. '\0' .. op.s
      local n = counts[name] or {op.q, op.s, 0}
      n[3] = n[3] + 1
      counts[name] = n
      if op.d >= 0 then
        timers[#timers + 1] = fmt(op.d)
        timers[#timers + 1] = op.id
      end
    end
    if op.e < 0 and op.uk ~= '' then
      uniques[#uniques + 1] = op.uk
      uniques[#uniques + 1] = op.id
    end
  end
end
flush()
return {'done', results}
"""
)

_UPDATE = (
    _PRELUDE
    + r"""
local ops = cjson.decode(ARGV[2])
for i, op in ipairs(ops) do op.r = ARGV[2 + i] end
local results = {}
for i, op in ipairs(ops) do
  local old = old_of(op.id)
  if old and old.v == op.e then
    results[i] = store(op, old)
  else
    results[i] = -2
  end
end
return results
"""
)

_CLAIM = (
    _PRELUDE
    + r"""
local queue, count, now, worker, vis = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local ready = P .. 'ready:' .. queue
local claimed, expired = {}, {}
local writes, timers, gone = {}, {}, {}
while #claimed < count do
  local popped = redis.call('ZPOPMIN', ready, count - #claimed)
  if #popped == 0 then break end
  local ids = {}
  for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
  local raws = hmget_all(JOBS, ids)
  for i, id in ipairs(ids) do
    local r = raws[i] and cjson.decode(raws[i])
    -- a popped id whose record is gone or no longer available is a stale entry
    if r and r.state == '"available"' then
      r.version = fmt(tonumber(r.version) + 1)
      if r.expires_at and tonumber(r.expires_at) <= now then
        r.state = '"discarded"'
        r.discarded_at = fmt(now)
        r.error = '{"code":"expired","type":"expired","message":"The job expired before it started."}'
        gone[#gone + 1] = id
        expired[#expired + 1] = cjson.encode(r)
        writes[#writes + 1] = id
        writes[#writes + 1] = expired[#expired]
      else
        local lease = now + ((vis > 0) and vis or tonumber(r.visibility_timeout_ms))
        local due = lease
        local timeout = r.timeout_ms and tonumber(r.timeout_ms) or 0
        if timeout > 0 and now + timeout < due then due = now + timeout end
        r.state = '"active"'
        r.attempt = fmt(tonumber(r.attempt) + 1)
        r.started_at = fmt(now)
        r.lease_expires_at = fmt(lease)
        if worker ~= '' then r.worker_id = worker else r.worker_id = nil end
        timers[#timers + 1] = fmt(due)
        timers[#timers + 1] = id
        claimed[#claimed + 1] = cjson.encode(r)
        writes[#writes + 1] = id
        writes[#writes + 1] = claimed[#claimed]
      end
    end
  end
end
chunked('HSET', JOBS, writes)
chunked('ZADD', P .. 'timers', timers)
chunked('ZREM', P .. 'timers', gone)
local counts = P .. 'counts:' .. queue
if #claimed + #expired > 0 then redis.call('HINCRBY', counts, 'available', -(#claimed + #expired)) end
if #claimed > 0 then redis.call('HINCRBY', counts, 'active', #claimed) end
if #expired > 0 then redis.call('HINCRBY', counts, 'discarded', #expired) end
return {claimed, expired}
"""
)

_PEEK = (
    _HMGET_ALL
    + r"""
local P = ARGV[1]
local JOBS = P .. 'jobs'
local spec = cjson.decode(ARGV[2])
local exists = {}
local found = hmget_all(JOBS, spec.ids)
for i = 1, #spec.ids do exists[i] = found[i] and 1 or 0 end
local holders = {}
for i, key in ipairs(spec.keys) do
  local holder = redis.call('HGET', P .. 'unique', key)
  if holder then
    holders[i] = {holder, redis.call('HGET', JOBS, holder) or ''}
  else
    holders[i] = {'', ''}
  end
end
return {exists, holders}
"""
)

# Reads of records return one list of record texts (false where there is none).
_GET = (
    _HMGET_ALL
    + r"""
return hmget_all(ARGV[1] .. 'jobs', ARGV, 2)
"""
)

_DUE = (
    _HMGET_ALL
    + r"""
local P = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', P .. 'timers', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
return hmget_all(P .. 'jobs', ids)
"""
)

_DEAD_PAGE = (
    _HMGET_ALL
    + r"""
local P = ARGV[1]
local key = P .. 'dead'
if ARGV[2] ~= '' then key = P .. 'deadq:' .. ARGV[2] end
local offset, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local total = redis.call('ZCARD', key)
local found = {}
if limit > 0 then
  local ids = redis.call('ZRANGE', key, offset, offset + limit - 1)
  found = hmget_all(P .. 'jobs', ids)
end
return {total, found}
"""
)

_DELETE_DEAD = r"""
local P, id = ARGV[1], ARGV[2]
if not redis.call('ZSCORE', P .. 'dead', id) then return 0 end
local raw = redis.call('HGET', P .. 'jobs', id)
if not raw then return 0 end
local r = cjson.decode(raw)
local queue = cjson.decode(r.queue)
redis.call('ZREM', P .. 'dead', id)
redis.call('ZREM', P .. 'deadq:' .. queue, id)
redis.call('ZREM', P .. 'timers', id)
redis.call('HINCRBY', P .. 'counts:' .. queue, cjson.decode(r.state), -1)
if r.unique_key then
  local ukey = cjson.decode(r.unique_key)
  if redis.call('HGET', P .. 'unique', ukey) == id then redis.call('HDEL', P .. 'unique', ukey) end
end
redis.call('HDEL', P .. 'jobs', id)
return 1
"""

_SAVE_SNAPSHOT = r"""
local P = ARGV[1]
if ARGV[4] then
  -- compare-and-set: ARGV[4] is the expected version, '' for "must not exist"
  local current = ''
  if redis.call('HEXISTS', P .. 'snapshots', ARGV[2]) == 1 then
    current = redis.call('HGET', P .. 'snapver', ARGV[2]) or '0'
  end
  if current ~= ARGV[4] then return false end
end
redis.call('HSET', P .. 'snapshots', ARGV[2], ARGV[3])
if not redis.call('ZSCORE', P .. 'snaporder', ARGV[2]) then
  local seq = redis.call('INCR', P .. 'snapseq')
  redis.call('ZADD', P .. 'snaporder', seq, ARGV[2])
  local kind = string.match(ARGV[2], '^[^:]*:')
  if kind then redis.call('ZADD', P .. 'snapkind:' .. kind, seq, ARGV[2]) end
end
return redis.call('HINCRBY', P .. 'snapver', ARGV[2], 1)
"""

_LOAD_SNAPSHOT = r"""
local P = ARGV[1]
local value = redis.call('HGET', P .. 'snapshots', ARGV[2])
if not value then return false end
return {value, redis.call('HGET', P .. 'snapver', ARGV[2]) or '0'}
"""

_DELETE_SNAPSHOT = r"""
local P = ARGV[1]
redis.call('ZREM', P .. 'snaporder', ARGV[2])
local kind = string.match(ARGV[2], '^[^:]*:')
if kind then redis.call('ZREM', P .. 'snapkind:' .. kind, ARGV[2]) end
redis.call('HDEL', P .. 'snapver', ARGV[2])
return redis.call('HDEL', P .. 'snapshots', ARGV[2])
"""

_LIST_SNAPSHOTS = r"""
local P, prefix = ARGV[1], ARGV[2]
local kind = string.match(prefix, '^[^:]*:')
local keys
if kind and redis.call('EXISTS', P .. 'snapindexed') == 1 then
  keys = redis.call('ZRANGE', P .. 'snapkind:' .. kind, 0, -1)
else
  -- Every key, and (once, for data saved before the per-kind indexes) build them.
  local all = redis.call('ZRANGE', P .. 'snaporder', 0, -1, 'WITHSCORES')
  keys = {}
  for i = 1, #all, 2 do
    keys[#keys + 1] = all[i]
    local k = string.match(all[i], '^[^:]*:')
    if k then redis.call('ZADD', P .. 'snapkind:' .. k, all[i + 1], all[i]) end
  end
  redis.call('SET', P .. 'snapindexed', '1')
end
local found = {}
for _, key in ipairs(keys) do
  if string.sub(key, 1, #prefix) == prefix then
    local value = redis.call('HGET', P .. 'snapshots', key)
    if value then
      found[#found + 1] = key
      found[#found + 1] = value
    end
  end
end
return found
"""

_APPEND_EVENTS = r"""
-- ARGV: prefix, size, then id, event JSON pairs
local P = ARGV[1]
local size = tonumber(ARGV[2])
local count = (#ARGV - 2) / 2
local last = redis.call('INCRBY', P .. 'evseq', count)
local raws, at = {}, {}
for i = 0, count - 1 do
  raws[#raws + 1] = ARGV[4 + 2 * i]
  at[#at + 1] = last - count + 1 + i
  at[#at + 1] = ARGV[3 + 2 * i]
end
local length = 0
for j = 1, #raws, 500 do
  length = redis.call('RPUSH', P .. 'events', unpack(raws, j, math.min(j + 499, #raws)))
end
for j = 1, #at, 1000 do
  redis.call('ZADD', P .. 'evat', unpack(at, j, math.min(j + 999, #at)))
end
if length > size then
  redis.call('LTRIM', P .. 'events', -size, -1)
  redis.call('ZREMRANGEBYSCORE', P .. 'evat', '-inf', last - size)
end
return 1
"""

# Reads from just after ``after`` (located through ``evat``: event id -> seq, and
# the list holds seqs ``evseq - LLEN + 1 .. evseq``), in chunks, until ``limit``
# events matched: a poll for what is new decodes only what is new.
_READ_EVENTS = r"""
local P = ARGV[1]
local q = cjson.decode(ARGV[2])
local function set_of(list)
  local s = {}
  for _, x in ipairs(list) do s[x] = true end
  return s, #list > 0
end
local types, by_type = set_of(q.types)
local queues, by_queue = set_of(q.queues)
local job_types, by_job_type = set_of(q.job_types)
local length = redis.call('LLEN', P .. 'events')
local index = 0
if q.after ~= '' then
  local seq = redis.call('ZSCORE', P .. 'evat', q.after)
  if not seq then return {} end
  local head = tonumber(redis.call('GET', P .. 'evseq') or '0') - length + 1
  index = tonumber(seq) - head + 1
end
local found = {}
while #found < q.limit and index < length do
  local events = redis.call('LRANGE', P .. 'events', index, index + 499)
  if #events == 0 then break end
  index = index + #events
  for _, raw in ipairs(events) do
    local event = cjson.decode(raw)
    local data = event.data
    if type(data) ~= 'table' then data = {} end
    if (not by_type or types[event.type])
       and (not by_queue or (type(data.queue) == 'string' and queues[data.queue]))
       and (not by_job_type or (type(data.job_type) == 'string' and job_types[data.job_type])) then
      found[#found + 1] = raw
      if #found >= q.limit then break end
    end
  end
end
return found
"""

_RESET = r"""
local P = ARGV[1]
local keys = redis.call('KEYS', P .. '*')
for i = 1, #keys, 500 do
  redis.call('DEL', unpack(keys, i, math.min(i + 499, #keys)))
end
return #keys
"""

_SCRIPTS = {
    "insert": _INSERT,
    "update": _UPDATE,
    "claim": _CLAIM,
    "peek": _PEEK,
    "get": _GET,
    "due": _DUE,
    "dead_page": _DEAD_PAGE,
    "delete_dead": _DELETE_DEAD,
    "save_snapshot": _SAVE_SNAPSHOT,
    "load_snapshot": _LOAD_SNAPSHOT,
    "delete_snapshot": _DELETE_SNAPSHOT,
    "list_snapshots": _LIST_SNAPSHOTS,
    "append_events": _APPEND_EVENTS,
    "read_events": _READ_EVENTS,
    "reset": _RESET,
}

# -- records ------------------------------------------------------------------------


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _field_text(value: Any) -> str:
    """``_dumps(value)``, with the common scalars done without the encoder's overhead
    (a record has some thirty fields; this is most of the cost of writing one)."""
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)  # what json.dumps does for a str
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    return _dumps(value)


def _job_of(raw: str | None) -> Job | None:
    """A job from its stored record text; ``None`` for a missing one (nil, ``""``).

    The record maps field names (plain identifiers) to JSON texts, so the whole
    record is rebuilt as one JSON object and parsed in one call."""
    if not raw:
        return None
    fields = json.loads(raw)
    record = json.loads("{" + ",".join([f'"{name}":{text}' for name, text in fields.items()]) + "}")
    return Job.from_record(record)


def _op(job: Job, expected: int = -1) -> dict[str, Any]:
    """What the scripts need to write ``job``: its record text and its index entries."""
    record = job.to_record()
    if job.state is State.AVAILABLE:
        record.pop("seq", None)  # the script appends the seq Redis hands out
    due = timers_of(job)
    return {
        "id": job.id,
        "e": expected,
        "r": _dumps({name: _field_text(value) for name, value in record.items()}),
        "q": job.queue,
        "s": job.state.value,
        "p": job.priority,
        "d": min(due) if due else -1,
        "dl": job.state is State.DISCARDED and job.dead_letter,
        "uk": job.unique_key or "",
    }


def _take_records(ops: list[dict[str, Any]]) -> list[str]:
    """The ops' record texts, taken out: they go as script arguments of their own
    (``ARGV[2 + i]`` for op ``i``), not escaped a second time inside the spec's JSON."""
    return [op.pop("r") for op in ops]


def _describe(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisBackend:
    name = "redis"
    capabilities = EVERY_CAPABILITY
    needs_asyncio = True

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        event_log_size: int = EVENT_LOG_SIZE,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self.url = url or DEFAULT_URL
        self.prefix = prefix
        self._event_log_size = event_log_size
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._bridge: AsyncioBridge | None = None
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    # -- lifetime ---------------------------------------------------------------------

    async def start(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._bridge = current_asyncio_bridge()
        self._client = aioredis.from_url(
            self.url,
            decode_responses=True,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._connect_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._scripts = {
            name: self._client.register_script(text) for name, text in _SCRIPTS.items()
        }
        try:
            await self.ping()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        bridge, self._bridge = self._bridge, None
        if client is None or bridge is None or bridge.closed:
            return
        with trio.CancelScope(shield=True):
            try:
                await bridge.run(client.aclose())
            except Exception:  # closing a broken connection must not fail the shutdown
                pass

    async def _run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run one asyncio coroutine on the bridge; Redis failures become 503s."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        bridge = self._bridge
        if bridge is None or bridge.closed or self._client is None:
            raise BackendUnavailable(
                "The Redis backend is not connected.", details={"backend": "redis"}
            )
        result: T
        try:
            with trio.CancelScope(shield=True):
                result = await bridge.run(make())
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise BackendUnavailable(
                f"Redis at {_describe(self.url)} is unreachable: {error}",
                details={"backend": "redis", "error": type(error).__name__},
            ) from error
        return result

    async def _script(self, name: str, *args: Any) -> Any:
        script = self._scripts[name]
        return await self._run(lambda: script(keys=[], args=[self.prefix, *args]))

    async def ping(self) -> float:
        client = self._client
        started = time.perf_counter()
        await self._run(lambda: client.ping())
        return (time.perf_counter() - started) * 1000.0

    # -- jobs ---------------------------------------------------------------------------

    async def insert_jobs(
        self, jobs: Sequence[Job], *, atomic: bool = False
    ) -> list[Job | Deduplicated | OJSError]:
        if not jobs:
            return []
        keys = list(
            dict.fromkeys(
                job.unique_key for job in jobs if job.unique_key is not None and job.unique
            )
        )
        originals = [(job.state, job.scheduled_at, job.enqueued_at) for job in jobs]
        for _ in range(MAX_INSERT_ATTEMPTS):
            for job, (state, scheduled_at, enqueued_at) in zip(jobs, originals, strict=True):
                job.state, job.scheduled_at, job.enqueued_at = state, scheduled_at, enqueued_at
            if keys:
                exists, holders = await self._script(
                    "peek", _dumps({"ids": [job.id for job in jobs], "keys": keys})
                )
                existing = {job.id for job, found in zip(jobs, exists, strict=True) if found}
                stored_holders = {
                    key: (holder_id, _job_of(raw))
                    for key, (holder_id, raw) in zip(keys, holders, strict=True)
                }
            else:
                existing, stored_holders = set(), {}
            results, ops, slots = self._plan(jobs, existing, stored_holders)
            if atomic and any(isinstance(result, OJSError) for result in results):
                return results
            guards = [
                [key, holder_id, holder.version if holder is not None else -1]
                for key, (holder_id, holder) in stored_holders.items()
            ]
            spec = {"atomic": atomic, "strict": bool(keys), "guards": guards, "ops": ops}
            records = _take_records(ops)
            reply = await self._script("insert", _dumps(spec), *records)
            if reply[0] == "retry":
                continue
            outcomes = reply[1]
            for index, outcome in enumerate(outcomes):
                slot = slots[index]
                if slot >= 0 and outcome == -2:
                    results[slot] = duplicate_id(jobs[slot])
            return results
        raise BackendUnavailable(
            "Unique keys kept changing concurrently while inserting; try again.",
            details={"backend": "redis"},
        )

    def _plan(
        self,
        jobs: Sequence[Job],
        existing: set[str],
        stored_holders: dict[str, tuple[str, Job | None]],
    ) -> tuple[list[Job | Deduplicated | OJSError], list[dict[str, Any]], list[int]]:
        """Decide each insert as MemoryBackend does, in order, against the holders read.

        Returns the results, the write operations and, per operation, the index of
        the job it stores (``-1`` for a replaced holder being cancelled)."""
        holders: dict[str, Job | None] = {key: job for key, (_, job) in stored_holders.items()}
        taken = set(existing)
        results: list[Job | Deduplicated | OJSError] = []
        ops: list[dict[str, Any]] = []
        slots: list[int] = []
        for index, planned in enumerate(jobs):
            decision = plan_insert(planned, taken.__contains__, holders.get)
            results.append(decision)
            if not isinstance(decision, Job):
                continue
            job = decision
            holder = holders.get(job.unique_key) if job.unique_key is not None else None
            cancelled = replaced_by(job, holder)  # a terminal holder just loses the key
            if cancelled is not None and holder is not None:
                ops.append(_op(cancelled, holder.version))
                slots.append(-1)
            taken.add(job.id)
            ops.append(_op(job))
            slots.append(index)
            if job.unique_key is not None:
                holders[job.unique_key] = job
        return results, ops, slots

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        if not job_ids:
            return []
        found = await self._script("get", *job_ids)
        return [_job_of(raw) for raw in found]

    async def update_jobs(self, updates: Sequence[tuple[Job, int]]) -> list[bool]:
        if not updates:
            return []
        ops = [_op(job, expected) for job, expected in updates]
        records = _take_records(ops)
        outcomes = await self._script("update", _dumps(ops), *records)
        return [outcome != -2 for outcome in outcomes]

    async def claim(
        self, queue: str, count: int, now: int, worker_id: str | None, visibility_ms: int | None
    ) -> tuple[list[Job], list[Job]]:
        if count <= 0:
            return [], []
        claimed, expired = await self._script(
            "claim",
            queue,
            count,
            now,
            _dumps(worker_id) if worker_id is not None else "",
            visibility_ms or 0,
        )
        return (
            [job for job in map(_job_of, claimed) if job is not None],
            [job for job in map(_job_of, expired) if job is not None],
        )

    async def due_jobs(self, now: int, limit: int) -> list[Job]:
        found = await self._script("due", now, limit)
        return [job for job in map(_job_of, found) if job is not None]

    async def next_due_at(self) -> int | None:
        client, key = self._client, self.prefix + "timers"
        first = await self._run(lambda: client.zrange(key, 0, 0, withscores=True))
        return int(first[0][1]) if first else None

    async def count_jobs(self, queue: str) -> dict[State, int]:
        client, key = self._client, f"{self.prefix}counts:{queue}"
        counts = await self._run(lambda: client.hgetall(key))
        return {State(state): int(n) for state, n in counts.items() if int(n) > 0}

    # -- dead letter ----------------------------------------------------------------

    async def list_dead_letter(
        self, queue: str | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        total, found = await self._script("dead_page", queue or "", offset, limit)
        return [job for job in map(_job_of, found) if job is not None], int(total)

    async def delete_dead_letter(self, job_id: str) -> bool:
        return bool(await self._script("delete_dead", job_id))

    # -- snapshots ------------------------------------------------------------------

    async def load_snapshot(self, key: str) -> dict[str, Any] | None:
        client, name = self._client, self.prefix + "snapshots"
        raw = await self._run(lambda: client.hget(name, key))
        return json.loads(raw) if raw is not None else None

    async def save_snapshot(self, key: str, state: dict[str, Any]) -> None:
        await self._script("save_snapshot", key, _dumps(state))

    async def load_snapshot_versioned(self, key: str) -> tuple[dict[str, Any], int] | None:
        found = await self._script("load_snapshot", key)
        if not found:
            return None
        raw, version = found
        return dict(json.loads(raw)), int(version)

    async def save_snapshot_if(
        self, key: str, state: dict[str, Any], expected_version: int | None
    ) -> int | None:
        expected = "" if expected_version is None else str(expected_version)
        version = await self._script("save_snapshot", key, _dumps(state), expected)
        return int(version) if version is not None else None

    async def list_snapshots(self, prefix: str) -> dict[str, dict[str, Any]]:
        flat = await self._script("list_snapshots", prefix)
        return {flat[i]: json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def delete_snapshot(self, key: str) -> bool:
        return bool(await self._script("delete_snapshot", key))

    # -- events -----------------------------------------------------------------------

    async def append_events(self, events: Sequence[dict[str, Any]]) -> None:
        if events:
            pairs: list[str] = []
            for event in events:
                pairs += [str(event["id"]), _dumps(event)]
            await self._script("append_events", self._event_log_size, *pairs)

    async def read_events(self, query: EventFilter) -> list[dict[str, Any]]:
        spec = {
            "types": sorted(query.types),
            "queues": sorted(query.queues),
            "job_types": sorted(query.job_types),
            "after": query.after or "",
            "limit": query.limit,
        }
        found = await self._script("read_events", _dumps(spec))
        return [json.loads(raw) for raw in found]

    async def reset(self) -> None:
        await self._script("reset")
