"""The event outbox in Lua: appended by every script that writes a job or a snapshot with
events (:data:`APPEND`, included in those scripts), read by :data:`READ`.

Keys (under the prefix): ``outbox``, a list of entry texts, oldest first, trimmed to the
newest ``keep``; ``outseq``, the sequence number of the newest entry (the list holds
``outseq - LLEN + 1 .. outseq``); ``outkeys``, a sorted set entry key -> sequence number,
trimmed with the list, so a read after an event starts at its entry without a scan;
``outhold``, if set, the sequence number of the last entry an external relay has taken
(:data:`HOLD`): entries after it are never trimmed, whatever ``keep`` says, so a relay
whose sink is away (Kafka) loses nothing; the kafka backend sets it, others leave it unset.

An entry text is ``key "\\n" before "\\n" body``: for a job change, the state before
(``""`` for a new job) and the record text just written; for an event stored whole,
``before`` is ``*`` and the body is the event's JSON. Nothing is escaped: keys and
states have no newline and JSON texts hold none unescaped.
"""

from __future__ import annotations

APPEND = r"""
local OUTBOX = {}
-- An outbox entry for this script's writes; flush_outbox() appends them all at once.
local function emit(key, before, body)
  OUTBOX[#OUTBOX + 1] = key
  OUTBOX[#OUTBOX + 1] = key .. '\n' .. before .. '\n' .. body
end
local function flush_outbox(P, keep)
  local n = #OUTBOX / 2
  if n == 0 then return end
  local last = redis.call('INCRBY', P .. 'outseq', n)
  local texts, at = {}, {}
  for i = 1, n do
    at[#at + 1] = last - n + i
    at[#at + 1] = OUTBOX[2 * i - 1]
    texts[#texts + 1] = OUTBOX[2 * i]
  end
  local length = 0
  for j = 1, #texts, 500 do
    length = redis.call('RPUSH', P .. 'outbox', unpack(texts, j, math.min(j + 499, #texts)))
  end
  for j = 1, #at, 1000 do
    redis.call('ZADD', P .. 'outkeys', unpack(at, j, math.min(j + 999, #at)))
  end
  if length > keep then
    local hold = redis.call('GET', P .. 'outhold')
    if hold then keep = math.max(keep, last - tonumber(hold)) end
  end
  if length > keep then
    redis.call('LTRIM', P .. 'outbox', -keep, -1)
    redis.call('ZREMRANGEBYSCORE', P .. 'outkeys', '-inf', last - keep)
  end
  OUTBOX = {}
end
"""

READ = r"""
-- ARGV: prefix, after key ('' = from the oldest), resume ('1': an unknown key reads from
-- the oldest), first sequence number to read ('' = decided by the key), count.
-- Returns {sequence number of the first entry returned, 1 if it is the key's entry, entries}.
local P = ARGV[1]
local length = redis.call('LLEN', P .. 'outbox')
local head = tonumber(redis.call('GET', P .. 'outseq') or '0') - length + 1
local seq, at_key = head, 0
if ARGV[4] ~= '' then
  seq = math.max(tonumber(ARGV[4]), head)
elseif ARGV[2] ~= '' then
  local found = redis.call('ZSCORE', P .. 'outkeys', ARGV[2])
  if found then
    seq, at_key = tonumber(found), 1
  elseif ARGV[3] ~= '1' then
    return {head, 0, {}}
  end
end
local index = seq - head
return {seq, at_key, redis.call('LRANGE', P .. 'outbox', index, index + tonumber(ARGV[5]) - 1)}
"""

HOLD = r"""
-- ARGV: prefix, key of the entry of the last event relayed ('' = leave the hold where it
-- is), and 'start' to set it, if unset, before the oldest entry kept (so nothing kept is
-- trimmed before it is relayed). The hold moves up (never back) to the entry before that
-- one: an entry may hold two events and a batch may end between them. Returns the
-- entries after the one last relayed (the relay's backlog).
local P = ARGV[1]
local last = tonumber(redis.call('GET', P .. 'outseq') or '0')
local head = last - redis.call('LLEN', P .. 'outbox')
if ARGV[3] == 'start' then redis.call('SETNX', P .. 'outhold', head - 1) end
local hold = tonumber(redis.call('GET', P .. 'outhold') or (head - 1))
if ARGV[2] ~= '' then
  local seq = redis.call('ZSCORE', P .. 'outkeys', ARGV[2])
  if seq and tonumber(seq) - 1 > hold then
    hold = tonumber(seq) - 1
    redis.call('SET', P .. 'outhold', hold)
  end
end
return math.max(0, last - math.max(hold, head - 1) - 1)
"""
