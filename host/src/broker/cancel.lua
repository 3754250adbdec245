-- Cancels one job found waiting in the stream or in the delayed set, or
-- marks it for its host when it is running, in one atomic step.
--
-- KEYS[1] the stream, KEYS[2] the delayed set, KEYS[3] the cancelling hash,
-- KEYS[4] the counters hash, KEYS[5] the job's result hash, KEYS[6] the
-- reply stream of a producer waiting for it (KEYS[5] again when none),
-- KEYS[7] the job's unique key (KEYS[5] again when none)
-- ARGV[1] consumer group, ARGV[2] job id, ARGV[3] "stream" or "delayed",
-- ARGV[4] the entry id or the delayed-set member found by the lookup,
-- ARGV[5] now (ms), ARGV[6] how long the result is kept (ms), ARGV[7] 1 when
-- KEYS[6] is a reply stream, ARGV[8] 1 when KEYS[7] is a unique key
--
-- Returns {"cancelled"}; {"running", consumer} when a host holds the entry
-- (marked: that host stops it, or the one that reclaims it); {"gone"} when
-- the entry or member is no longer there (it moved on: look again); or
-- {"wrongtype", key} when a key the step needs holds another type.
--
-- Every check comes before the first write (the XDEL or ZREM), and no write
-- after it can fail: the result hash is deleted before it is written, the
-- counters, the reply and the unique key's release are written only when
-- their keys can take it. A cancelled job's mark and unique key (if it still
-- holds this job) go with it.

local group, job, where, found = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, keep, has_reply = ARGV[5], tonumber(ARGV[6]), ARGV[7] == '1'
local has_unique = ARGV[8] == '1'

local function is(key, kind)
  local t = redis.call('TYPE', key)['ok']
  return t == 'none' or t == kind
end

for i, kind in ipairs({ 'stream', 'zset' }) do
  if not is(KEYS[i], kind) then
    return { 'wrongtype', KEYS[i] }
  end
end
-- Needed to mark a running job; a job removed here clears its mark if it can.
local marks_ok = is(KEYS[3], 'hash')

if where == 'stream' then
  -- pcall: no group yet means nobody read it.
  local pending = redis.pcall('XPENDING', KEYS[1], group, found, found, 1)
  if type(pending) == 'table' and pending.err == nil and #pending > 0 then
    if not marks_ok then
      return { 'wrongtype', KEYS[3] }
    end
    redis.call('HSET', KEYS[3], job, now)
    return { 'running', pending[1][2] }
  end
  if #redis.call('XRANGE', KEYS[1], found, found) == 0 then
    return { 'gone' }
  end
  redis.call('XDEL', KEYS[1], found)
else
  if redis.call('ZREM', KEYS[2], found) == 0 then
    return { 'gone' }
  end
end

if marks_ok then
  redis.call('HDEL', KEYS[3], job)
end
if has_unique and redis.call('TYPE', KEYS[7])['ok'] == 'string' and redis.call('GET', KEYS[7]) == job then
  redis.call('DEL', KEYS[7])
end
if is(KEYS[4], 'hash') then
  local count = redis.call('HGET', KEYS[4], 'cancelled')
  if not count or count:match('^%d+$') and #count <= 18 then
    redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
  end
end
if keep > 0 then
  redis.call('DEL', KEYS[5])
  redis.call('HSET', KEYS[5], 'outcome', 'cancelled', 'text', 'cancelled', 'finished_ms', now)
  redis.call('PEXPIRE', KEYS[5], keep)
end
if has_reply and redis.call('TYPE', KEYS[6])['ok'] == 'stream' then
  -- pcall: a stream that has used up its ids must not fail the step.
  redis.pcall('XADD', KEYS[6], '*', 'job_id', job, 'outcome', 'cancelled', 'text', 'cancelled')
end
return { 'cancelled' }
