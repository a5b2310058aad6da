"""Every Lua script of the Redis backend by name (:data:`SCRIPTS`, which
:class:`~ojs_actors.backends.redis.connection.RedisConnection` registers): the job scripts
of :mod:`~ojs_actors.backends.redis.lua_jobs`, and here those of snapshots
(:class:`~ojs_actors.backends.redis.snapshots.RedisSnapshots`), the outbox reader of
:mod:`~ojs_actors.backends.redis.lua_outbox` (for
:class:`~ojs_actors.backends.redis.events.RedisEventLog`) and ``reset``
(:meth:`RedisConnection.reset <ojs_actors.backends.redis.connection.RedisConnection.reset>`).
Each names its keys from the prefix in ``ARGV[1]``."""

from __future__ import annotations

from .lua_jobs import JOB_SCRIPTS
from .lua_outbox import APPEND, HOLD, READ

_SAVE_SNAPSHOT = (
    APPEND
    + r"""
-- ARGV: prefix, key, value[, expected version ('' = must not exist)[, outbox retention,
-- then id, event JSON pairs to append to the outbox if the save lands]]
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
if ARGV[5] then
  for i = 6, #ARGV, 2 do emit(ARGV[i], '*', ARGV[i + 1]) end
  flush_outbox(P, tonumber(ARGV[5]))
end
return redis.call('HINCRBY', P .. 'snapver', ARGV[2], 1)
"""
)

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

_RESET = r"""
local P = ARGV[1]
local keys = redis.call('KEYS', P .. '*')
for i = 1, #keys, 500 do
  redis.call('DEL', unpack(keys, i, math.min(i + 499, #keys)))
end
return #keys
"""


SCRIPTS = {
    **JOB_SCRIPTS,
    "save_snapshot": _SAVE_SNAPSHOT,
    "load_snapshot": _LOAD_SNAPSHOT,
    "delete_snapshot": _DELETE_SNAPSHOT,
    "list_snapshots": _LIST_SNAPSHOTS,
    "read_outbox": READ,
    "hold_outbox": HOLD,
    "reset": _RESET,
}
"""Script name -> Lua text: every script the backend's parts call."""
