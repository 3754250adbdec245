-- Enqueues a job with a unique key, unless another job holds that key.
--
-- KEYS[1] the unique key (a string: the id of the job holding it), KEYS[2]
-- the queue's stream, or its delayed set for a job that is not due yet
-- ARGV[1] the job id, ARGV[2] how long the key is held at most (ms, > 0),
-- ARGV[3] "xadd" or "zadd", ARGV[4] the due time (ms since epoch; "" for
-- "xadd"), then the job: for "xadd" its fields (k, v, ...), for "zadd" its
-- delayed-set member (a MessagePack array, see delayed.rs)
--
-- Guarantee: the check of the key, the job's write and the key's SET are one
-- atomic step, so of any number of producers racing with one key exactly one
-- writes a job; the others learn its id. Every check runs before the first
-- write (the XADD or ZADD), and the SET after it cannot fail: an error or a
-- refusal writes nothing. The key is held until the job's final outcome
-- releases it (record_outcomes.lua, compare-and-delete) or its TTL ends.
-- Returns {"queued", entry id ("" for "zadd")}, {"duplicate", the holder's
-- job id} or {"refused", key, why} (a key of another type, a full stream).

-- XADD * fails on a stream whose last id is this one.
local MAX_ID = '18446744073709551615-18446744073709551615'
-- unpack() puts its values on Lua's stack, which holds about 8000.
local MAX_FIELD_ARGS = 7000
local NAMES = { zset = 'sorted set' }

local unique, target = KEYS[1], KEYS[2]
local job, ttl, mode, due = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]

local found = redis.call('TYPE', unique)['ok']
if found == 'string' then
  return {'duplicate', redis.call('GET', unique)}
elseif found ~= 'none' then
  return {'refused', unique, 'holds a ' .. (NAMES[found] or found) .. ', not a string'}
end
if ttl == nil or ttl < 1 or ttl ~= math.floor(ttl) then
  return {'refused', unique, 'cannot be held for ' .. tostring(ARGV[2]) .. ' ms'}
end

local kind = mode == 'zadd' and 'zset' or 'stream'
local kept = redis.call('TYPE', target)['ok']
if kept ~= 'none' and kept ~= kind then
  return {'refused', target, 'holds a ' .. (NAMES[kept] or kept) .. ', not a ' .. (NAMES[kind] or kind)}
end
if mode == 'zadd' then
  if tonumber(due) == nil or #ARGV ~= 5 then
    return {'refused', target, 'cannot take a due time of ' .. tostring(due)}
  end
else
  local count = #ARGV - 4
  if count < 2 or count % 2 ~= 0 or count > MAX_FIELD_ARGS then
    return {'refused', target, 'cannot take an entry of ' .. count .. ' field values'}
  end
  if kept == 'stream' then
    local info = redis.call('XINFO', 'STREAM', target)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        if info[i + 1] == MAX_ID then
          return {'refused', target, 'is a stream that has used up its entry ids (its last id is the maximum)'}
        end
        break
      end
    end
  end
end

-- Writes: the job first (nothing before it was written), then the key.
local id = ''
if mode == 'zadd' then
  redis.call('ZADD', target, due, ARGV[5])
else
  id = redis.call('XADD', target, '*', unpack(ARGV, 5))
end
redis.call('SET', unique, job, 'PX', ttl)
return {'queued', id}
