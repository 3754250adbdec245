-- Fires one tick of a schedule (or a run-now) in one atomic step: checks that
-- the tick has not fired yet, moves the schedule's last tick to it and adds
-- its job to the queue's stream. Every host runs this for every tick it sees
-- come due; the first call wins and the others find the tick taken, so each
-- tick enqueues exactly one job across all hosts, with no leader.
--
-- KEYS[1] the schedule's hash, KEYS[2] the stream of its queue (both under
-- the queue's hash tag: one slot on a Cluster)
-- ARGV[1] "tick" (fire tick ARGV[3]) or "now" (run-now: the tick state is
-- neither checked nor moved), ARGV[2] the schedule's `rev` the caller read
-- its definition at (the job's type and payload come from that definition),
-- ARGV[3] the tick in ms since the Unix epoch ("" for "now"), ARGV[4..] the
-- job's fields (k, v, ...), as the caller's envelope writes them
--
-- Returns one of
--   {"fired", entry id}          the job is on the stream (and, for a tick,
--                                last_tick is the tick)
--   {"taken", last tick}         the tick, or a later one, fired already
--   {"paused"}                   paused: nothing fires (a tick only)
--   {"stale"}                    the definition changed since the caller read
--                                it, or the tick is before the schedule was
--                                armed: read it again
--   {"gone"}                     there is no such schedule (removed)
--   {"wrongtype", key, why}      a key cannot be used; nothing was written
--
-- Guarantee: every check (key types, the stream's ids, the tick) runs before
-- the first write and no write after it can fail, so the script never stops
-- half-way (Redis does not undo what a failing script wrote; see
-- record_outcomes.lua): a job is added if and only if its tick is recorded.

local MAX_ID = '18446744073709551615-18446744073709551615'
local NAMES = { zset = 'sorted set' }
local schedule, stream = KEYS[1], KEYS[2]
local mode, rev, tick = ARGV[1], ARGV[2], ARGV[3]

local found = redis.call('TYPE', schedule)['ok']
if found == 'none' then
  return {'gone'}
elseif found ~= 'hash' then
  return {'wrongtype', schedule, 'holds a ' .. (NAMES[found] or found) .. ', not a hash'}
end
if redis.call('HGET', schedule, 'rev') ~= rev then
  return {'stale'}
end
if mode == 'tick' then
  if redis.call('HGET', schedule, 'paused') == '1' then
    return {'paused'}
  end
  local wanted = tonumber(tick)
  local last = tonumber(redis.call('HGET', schedule, 'last_tick') or '')
  if last ~= nil and last >= wanted then
    return {'taken', tostring(redis.call('HGET', schedule, 'last_tick'))}
  end
  local armed = tonumber(redis.call('HGET', schedule, 'armed_at') or '0') or 0
  if wanted <= armed then
    return {'stale'}
  end
end
found = redis.call('TYPE', stream)['ok']
if found ~= 'none' and found ~= 'stream' then
  return {'wrongtype', stream, 'holds a ' .. (NAMES[found] or found) .. ', not a stream'}
elseif found == 'stream' then
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      if info[i + 1] == MAX_ID then
        return {'wrongtype', stream, 'is a stream that has used up its entry ids (its last id is the maximum)'}
      end
      break
    end
  end
end

-- Writes: none of them can fail now.
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local id = redis.call('XADD', stream, '*', unpack(ARGV, 4))
if mode == 'tick' then
  redis.call('HSET', schedule, 'last_tick', tick, 'last_fired_at', now, 'last_job_entry', id)
end
return {'fired', id}
