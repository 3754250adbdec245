-- Decides whether one job of a plugin with fleet-wide limits may start now,
-- in one atomic step shared by every host: a concurrency cap (leases in a
-- sorted set) and a rate (GCRA: the rate's theoretical arrival time, TAT).
-- The rate is kept twice: for slots handed out (reservations, so waiting
-- jobs come back spread one interval apart instead of all retrying at once)
-- and for starts themselves, so jobs whose reserved slots came due together
-- (hosts or their promotion running late) still never start faster than the
-- rate and burst allow, in any window.
--
-- KEYS[1] the bucket's rate key (string: TAT in ms of Redis's clock),
-- KEYS[2] its running key (sorted set: member job id, score lease expiry ms),
-- KEYS[3] its starts key (string: TAT of the starts, ms)
-- ARGV[1] job id, ARGV[2] the rate's interval between starts in ms
-- (fractional; 0: no rate), ARGV[3] burst (starts at once above the rate,
-- at least 1), ARGV[4] most jobs running at once (0: no cap), ARGV[5] the
-- lease in ms (the job's time limit and a margin), ARGV[6] "1" when the job
-- already reserved its rate slot and waited for it (it takes no token)
--
-- Time is Redis's own (TIME), so hosts whose clocks differ still agree.
-- Returns one of
--   {"run"}                      start now: a token is taken, a lease added
--   {"reserved", wait, slot}     not before `slot` (ms), `wait` ms from now:
--                                that rate slot is this job's (the TAT moved
--                                past it); come back then with ARGV[6] = "1"
--                                (also the answer to a job that paid its slot
--                                when starts are ahead: nothing is written)
--   {"wait", running}            the cap is reached: nothing was spent
--   {"wrongtype", key, why}      a key cannot be used; nothing was written
-- (numbers as strings: Redis would cut a Lua number to an integer).
--
-- Guarantee: every key is type-checked before the first write and no write
-- after that can fail, so the script never stops half-way (Redis does not
-- undo what a failing script wrote; see record_outcomes.lua). A job denied by
-- the cap spends no rate token; a job that starts holds a lease that ends
-- with its run (ZREM by the host) or, if its host dies, at its expiry: dead
-- leases are pruned here. Both keys expire (PEXPIREAT) once they hold
-- nothing that matters, so per-key buckets do not pile up.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local job = ARGV[1]
local interval, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
local use_rate = interval > 0
local paid = ARGV[6] == '1'
local use_cap = cap > 0

local function ms(x)
  return string.format('%.3f', x)
end
local function at(x)
  return string.format('%d', math.ceil(x) + 1)
end

-- Checks, reading only. A TAT key: nil when missing, else its time or an error.
local function read_tat(key)
  local found = redis.call('TYPE', key)['ok']
  if found == 'string' then
    local value = tonumber(redis.call('GET', key))
    if value == nil or value ~= value or value == math.huge or value == -math.huge then
      return nil, 'holds a string that is not a time in ms'
    end
    return value, nil
  elseif found ~= 'none' then
    return nil, 'holds a ' .. found .. ', not a string'
  end
  return nil, nil
end
local tat, starts_tat = nil, nil
if use_rate then
  local problem
  if not paid then
    tat, problem = read_tat(KEYS[1])
    if problem then
      return {'wrongtype', KEYS[1], problem}
    end
  end
  starts_tat, problem = read_tat(KEYS[3])
  if problem then
    return {'wrongtype', KEYS[3], problem}
  end
end
if use_cap then
  local found = redis.call('TYPE', KEYS[2])['ok']
  if found ~= 'none' and found ~= 'zset' then
    return {'wrongtype', KEYS[2], 'holds a ' .. found .. ', not a sorted set'}
  end
end

-- Writes, none of which can fail now.
if use_cap then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  -- A job reclaimed from a host presumed dead renews its own lease.
  if redis.call('ZSCORE', KEYS[2], job) == false then
    local running = redis.call('ZCARD', KEYS[2])
    if running >= cap then
      return {'wait', tostring(running)}
    end
  end
end

if use_rate then
  -- The earliest time a start conforms: `burst` intervals before the TAT.
  local new_starts = math.max(starts_tat or now, now) + interval
  local starts_allowed = new_starts - burst * interval
  if paid and starts_allowed > now then
    return {'reserved', ms(starts_allowed - now), ms(starts_allowed)}
  end
  if not paid then
    local new_tat = math.max(tat or now, now) + interval
    local allowed = math.max(new_tat - burst * interval, starts_allowed)
    redis.call('SET', KEYS[1], ms(new_tat))
    redis.call('PEXPIREAT', KEYS[1], at(new_tat))
    if allowed > now then
      return {'reserved', ms(allowed - now), ms(allowed)}
    end
  end
  redis.call('SET', KEYS[3], ms(new_starts))
  redis.call('PEXPIREAT', KEYS[3], at(new_starts))
end

if use_cap then
  redis.call('ZADD', KEYS[2], now + lease, job)
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[2], at(tonumber(last[2])))
end
return {'run'}
