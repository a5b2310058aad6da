"""The Lua scripts of :class:`~ojs_actors.backends.redis.jobs.RedisJobs`: job records and
the indexes derived from them (ready sets, timers, dead letter, counts, unique keys).

Each script names its keys from the prefix in ``ARGV[1]``; the shared prelude keeps every
index in step with each job version written. :data:`JOB_SCRIPTS` maps the names
``RedisJobs`` calls them by to their texts (:data:`~ojs_actors.backends.redis.lua.SCRIPTS`
has every script)."""

from __future__ import annotations

from .lua_outbox import APPEND

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
    + APPEND
    + r"""
local P = ARGV[1]
local JOBS = P .. 'jobs'
-- Every writing script takes the outbox's retention as its last argument.
local KEEP = tonumber(ARGV[#ARGV])
-- Queues that got available jobs: announced on the channel P .. 'ready' at the end
-- (finish), so waiting fetches in every process sharing this Redis look at once.
local WOKEN = {}
local function finish()
  flush_outbox(P, KEEP)
  for queue in pairs(WOKEN) do redis.call('PUBLISH', P .. 'ready', queue) end
end
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
-- Move job `id` in or out of the dead letter sets, as its new version (old may be nil) says.
local function redead(id, old, new)
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
end
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
    WOKEN[new.q] = true
    seq = redis.call('INCR', P .. 'seq')
    redis.call('ZADD', P .. 'ready:' .. new.q, fmt(-new.p * 17592186044416 + seq), id)
  end
  if new.d >= 0 then
    redis.call('ZADD', P .. 'timers', fmt(new.d), id)
  else
    redis.call('ZREM', P .. 'timers', id)
  end
  redead(id, old, new)
  return seq
end
-- Write a whole job version (op = {id, v, r = record text, q, s, p, d, dl}) and its
-- outbox entry.
local function store(op, old)
  local seq = reindex(op.id, old, op)
  local r = op.r
  if seq >= 0 then r = with_seq(r, seq) end
  redis.call('HSET', JOBS, op.id, r)
  emit(op.id .. '_' .. op.v, old and old.s or '', r)
  return seq
end
-- Run `command key list...` in chunks (Lua's unpack has a stack limit).
local function chunked(command, key, list)
  for j = 1, #list, 1000 do
    redis.call(command, key, unpack(list, j, math.min(j + 999, #list)))
  end
end
-- Job versions written together, with one command per key at flush_batch() (the
-- records, each queue's counts and ready set, the timers) instead of store()'s
-- commands per job. `fresh` ready numbers (seq) are taken up front.
local function new_batch(fresh)
  local b = {seq = 0, records = {}, counts = {}, ready = {}, unready = {}, timers = {}, untimed = {}}
  if fresh > 0 then b.seq = redis.call('INCRBY', P .. 'seq', fresh) - fresh end
  return b
end
local function append(list, a, b)
  list[#list + 1] = a
  list[#list + 1] = b
end
local function per_queue(lists, q)
  local list = lists[q] or {}
  lists[q] = list
  return list
end
local function count(batch, q, s, delta)
  local name = q .. '\0' .. s
  local n = batch.counts[name] or {q, s, 0}
  n[3] = n[3] + delta
  batch.counts[name] = n
end
-- Stage the version op (as store() takes it) replacing old (nil for a new job); its
-- outbox entry too. Returns the seq it got if it became available, else -1.
local function stage(batch, op, old)
  if old then
    count(batch, old.q, old.s, -1)
    if old.s == 'available' then table.insert(per_queue(batch.unready, old.q), op.id) end
  end
  count(batch, op.q, op.s, 1)
  local r, seq = op.r, -1
  if op.s == 'available' then
    WOKEN[op.q] = true
    batch.seq = batch.seq + 1
    seq = batch.seq
    r = with_seq(r, seq)
    append(per_queue(batch.ready, op.q), fmt(-op.p * 17592186044416 + seq), op.id)
  end
  if op.d >= 0 then
    append(batch.timers, fmt(op.d), op.id)
  elseif old then
    batch.untimed[#batch.untimed + 1] = op.id
  end
  redead(op.id, old, op)
  append(batch.records, op.id, r)
  emit(op.id .. '_' .. op.v, old and old.s or '', r)
  return seq
end
local function flush_batch(batch)
  chunked('HSET', JOBS, batch.records)
  for _, n in pairs(batch.counts) do
    if n[3] ~= 0 then redis.call('HINCRBY', P .. 'counts:' .. n[1], n[2], n[3]) end
  end
  for q, list in pairs(batch.unready) do chunked('ZREM', P .. 'ready:' .. q, list) end
  for q, list in pairs(batch.ready) do chunked('ZADD', P .. 'ready:' .. q, list) end
  chunked('ZADD', P .. 'timers', batch.timers)
  chunked('ZREM', P .. 'timers', batch.untimed)
  batch.records, batch.counts, batch.ready, batch.unready = {}, {}, {}, {}
  batch.timers, batch.untimed = {}, {}
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
-- New jobs' records, index entries and unique keys are collected and written with one
-- command per key at the end, or before any write that reads them (cancelling a
-- replaced holder).
local fresh = 0
for i, op in ipairs(spec.ops) do
  if results[i] ~= -2 and op.e < 0 and op.s == 'available' then fresh = fresh + 1 end
end
local batch, uniques = new_batch(fresh), {}
local function flush()
  flush_batch(batch)
  chunked('HSET', P .. 'unique', uniques)
  uniques = {}
end
for i, op in ipairs(spec.ops) do
  if results[i] ~= -2 then
    if op.e >= 0 then
      flush()
      local old = old_of(op.id)
      if not old or old.v ~= op.e then
        finish()  -- what was written stays: its entries too
        return redis.error_reply('insert: holder changed')
      end
      results[i] = store(op, old)
    else
      results[i] = stage(batch, op, nil)
      if op.uk ~= '' then append(uniques, op.uk, op.id) end
    end
  end
end
flush()
finish()
return {'done', results}
"""
)

_UPDATE = (
    _PRELUDE
    + r"""
local ops = cjson.decode(ARGV[2])
local ids, seen, distinct = {}, {}, true
for i, op in ipairs(ops) do
  op.r = ARGV[2 + i]
  ids[i] = op.id
  if seen[op.id] then distinct = false end
  seen[op.id] = true
end
local results = {}
if not distinct then
  -- the same job twice: each compare-and-set must see the one before it
  for i, op in ipairs(ops) do
    local old = old_of(op.id)
    if old and old.v == op.e then results[i] = store(op, old) else results[i] = -2 end
  end
  finish()
  return results
end
-- Distinct jobs: one HMGET of the versions replaced, then one command per key for all
-- the writes (records, each queue's counts and ready set, timers), as insert does.
local raws = hmget_all(JOBS, ids)
local olds, fresh = {}, 0
for i, op in ipairs(ops) do
  local old = index_of(raws[i] and cjson.decode(raws[i]))
  if old and old.v == op.e then
    olds[i] = old
    if op.s == 'available' then fresh = fresh + 1 end
  else
    results[i] = -2
  end
end
local batch = new_batch(fresh)
for i, op in ipairs(ops) do
  if olds[i] then results[i] = stage(batch, op, olds[i]) end
end
flush_batch(batch)
finish()
return results
"""
)

_CLAIM = (
    _PRELUDE
    + r"""
local queue, count, now, worker, vis = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
-- The transitions as core decides them (RedisJobs.claim): target states, the expiry error.
local plan = cjson.decode(ARGV[7])
-- A rate limit (ARGV[8] claims per ARGV[9] ms, '' for none), counted here for every process.
local rated = nil
if ARGV[8] ~= '' then
  rated = P .. 'rate:' .. queue
  redis.call('ZREMRANGEBYSCORE', rated, '-inf', now - tonumber(ARGV[9]))
  count = math.min(count, tonumber(ARGV[8]) - redis.call('ZCARD', rated))
end
local claim_times = {}
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
    if r and r.state == plan.from then
      r.version = fmt(tonumber(r.version) + 1)
      r.changed_at = fmt(now)
      if r.expires_at and tonumber(r.expires_at) <= now then
        r.state = plan.expired
        r.discarded_at = fmt(now)
        r.error = plan.error
        gone[#gone + 1] = id
        expired[#expired + 1] = cjson.encode(r)
        writes[#writes + 1] = id
        writes[#writes + 1] = expired[#expired]
        emit(id .. '_' .. r.version, plan.from_state, expired[#expired])
      else
        local lease = now + ((vis > 0) and vis or tonumber(r.visibility_timeout_ms))
        local due = lease
        local timeout = r.timeout_ms and tonumber(r.timeout_ms) or 0
        if timeout > 0 and now + timeout < due then due = now + timeout end
        r.state = plan.claimed
        r.attempt = fmt(tonumber(r.attempt) + 1)
        r.started_at = fmt(now)
        r.lease_expires_at = fmt(lease)
        if worker ~= '' then r.worker_id = worker else r.worker_id = nil end
        timers[#timers + 1] = fmt(due)
        timers[#timers + 1] = id
        claimed[#claimed + 1] = cjson.encode(r)
        writes[#writes + 1] = id
        writes[#writes + 1] = claimed[#claimed]
        emit(id .. '_' .. r.version, plan.from_state, claimed[#claimed])
        claim_times[#claim_times + 1] = fmt(now)
        claim_times[#claim_times + 1] = id .. '_' .. r.version
      end
    end
  end
end
chunked('HSET', JOBS, writes)
chunked('ZADD', P .. 'timers', timers)
chunked('ZREM', P .. 'timers', gone)
local counts = P .. 'counts:' .. queue
if #claimed + #expired > 0 then
  redis.call('HINCRBY', counts, plan.from_state, -(#claimed + #expired))
end
if #claimed > 0 then redis.call('HINCRBY', counts, plan.claimed_state, #claimed) end
if #expired > 0 then redis.call('HINCRBY', counts, plan.expired_state, #expired) end
if rated and #claim_times > 0 then
  chunked('ZADD', rated, claim_times)
  redis.call('PEXPIRE', rated, tonumber(ARGV[9]))
end
finish()
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


# ARGV: prefix, the terminal states (JSON list), then id and version of each job to delete.
# A finished job has no ready or timer entry: only its dead letter entries go with it.
_DELETE_JOBS = r"""
local P = ARGV[1]
local terminal = {}
for _, state in ipairs(cjson.decode(ARGV[2])) do terminal[state] = true end
local out = {}
for i = 3, #ARGV, 2 do
  local id, done = ARGV[i], 0
  local raw = redis.call('HGET', P .. 'jobs', id)
  if raw then
    local r = cjson.decode(raw)
    local state = cjson.decode(r.state)
    if tonumber(r.version) == tonumber(ARGV[i + 1]) and terminal[state] then
      local queue = cjson.decode(r.queue)
      redis.call('ZREM', P .. 'dead', id)
      redis.call('ZREM', P .. 'deadq:' .. queue, id)
      redis.call('ZREM', P .. 'timers', id)
      redis.call('HINCRBY', P .. 'counts:' .. queue, state, -1)
      if r.unique_key then
        local ukey = cjson.decode(r.unique_key)
        if redis.call('HGET', P .. 'unique', ukey) == id then redis.call('HDEL', P .. 'unique', ukey) end
      end
      redis.call('HDEL', P .. 'jobs', id)
      done = 1
    end
  end
  out[#out + 1] = done
end
return out
"""

JOB_SCRIPTS = {
    "insert": _INSERT,
    "update": _UPDATE,
    "claim": _CLAIM,
    "peek": _PEEK,
    "get": _GET,
    "due": _DUE,
    "dead_page": _DEAD_PAGE,
    "delete_dead": _DELETE_DEAD,
    "delete_jobs": _DELETE_JOBS,
}
