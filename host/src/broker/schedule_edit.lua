-- Defines, pauses or resumes one schedule, in one step on its hash.
--
-- KEYS[1] the schedule's hash
-- ARGV[1] "define", then cron, tz, queue, type, payload, catch_up: creates
--         the schedule, or replaces the definition of an existing one and
--         keeps its fire state (last tick, paused); when the cron or the
--         zone changed, the schedule is armed again now, so the new
--         expression's earlier ticks never fire (nor count as missed)
-- ARGV[1] "pause" or "resume": a resumed schedule is armed again now, so
--         ticks that came due while it was paused never fire
--
-- Every edit increments `rev`, which schedule_fire.lua compares with the
-- definition a host read: a job always carries the definition in force.
-- Time is Redis's own (TIME), in ms since the Unix epoch.
--
-- Returns {"created"}, {"replaced", "kept" | "rearmed"}, {"paused"},
-- {"resumed"}, {"unchanged"} (paused or resumed already), {"missing"} (no
-- such schedule), or {"wrongtype", key, why}: nothing was written. The type
-- check comes before the first write, so nothing can fail half-way.

local NAMES = { zset = 'sorted set' }
local key, mode = KEYS[1], ARGV[1]
local found = redis.call('TYPE', key)['ok']
if found ~= 'none' and found ~= 'hash' then
  return {'wrongtype', key, 'holds a ' .. (NAMES[found] or found) .. ', not a hash'}
end
local rev = found == 'hash' and redis.call('HGET', key, 'rev')
if rev and (#rev > 15 or not string.match(rev, '^%d+$')) then
  return {'wrongtype', key, 'holds a field rev that is not a count'}
end
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))

if mode == 'define' then
  local cron, tz = ARGV[2], ARGV[3]
  local answer
  if found == 'none' then
    redis.call('HSET', key, 'paused', '0', 'armed_at', now, 'created_at', now)
    answer = {'created'}
  elseif redis.call('HGET', key, 'cron') ~= cron or redis.call('HGET', key, 'tz') ~= tz then
    redis.call('HSET', key, 'armed_at', now)
    answer = {'replaced', 'rearmed'}
  else
    answer = {'replaced', 'kept'}
  end
  redis.call('HSET', key, 'cron', cron, 'tz', tz, 'queue', ARGV[4], 'type', ARGV[5],
    'payload', ARGV[6], 'catch_up', ARGV[7])
  redis.call('HINCRBY', key, 'rev', 1)
  return answer
end

if found == 'none' then
  return {'missing'}
end
local paused = redis.call('HGET', key, 'paused') == '1'
if mode == 'pause' then
  if paused then
    return {'unchanged'}
  end
  redis.call('HSET', key, 'paused', '1')
  redis.call('HINCRBY', key, 'rev', 1)
  return {'paused'}
end
-- resume
if not paused then
  return {'unchanged'}
end
redis.call('HSET', key, 'paused', '0', 'armed_at', now)
redis.call('HINCRBY', key, 'rev', 1)
return {'resumed'}
