-- Records the outcomes of a batch of delivered jobs in one atomic step.
--
-- KEYS[1] the queue's stream, KEYS[2] its delayed sorted set, KEYS[3] its
-- dead-letter stream, KEYS[4] its counters hash (done, retry, dead, expired,
-- cancelled, throttled), KEYS[5] its cancelling hash (jobs asked to stop),
-- KEYS[6..] reply streams of producers waiting for some of these jobs, then
-- the key-value buckets (hashes) the jobs write, then the unique keys
-- (strings holding a job id) the jobs release, then the result hashes of
-- jobs whose outcome is kept
-- ARGV[1] consumer group, ARGV[2] number of records, ARGV[3] how long a
-- kept outcome lives (ms, 0 when none is kept), ARGV[4] the recording host,
-- ARGV[5] now (ms), then per record:
--   entry id, job id, reply (index into KEYS, 0 for none), reply text (the
--   output or the final error), unique (index into KEYS of the job's unique
--   key, 0 for none), result (index into KEYS of the hash its final outcome
--   is kept in, 0 for none), attempt, action, n, and the action's n
--   arguments:
--   "done"  number of follow-up jobs, then per job: field count, its fields (k, v, ...);
--           then, if any arguments are left, the number of key-value writes
--           and per write: its bucket (index into KEYS), "set", "del" or
--           "incr", the key (hash field) and the value or the count to add
--           ("" for "del"); at most one write per key and record
--   "retry" due time (ms since epoch), the next attempt's fields as one delayed-set
--           member (a MessagePack array, see delayed.rs)
--   "wait"  as "retry", for a job over a fleet-wide limit of its plugin: the
--           member is the same attempt; counted as "throttled", no reply
--   "dead"  the dead-letter entry's fields (k, v, ...)
--   "dead-in-place" an entry too large for the host, whose fields never left
--           Redis: how many field names and values it has, then the fields
--           added beside its own (k, v, ...); its own are copied from the
--           stream (XRANGE), total_attempts and replay_count taken from its
--           attempt and replay_count when they are counts
--   "ack"   none (expired jobs)
--   "cancelled" none: acknowledged, counted and replied as cancelled
--
-- Guarantee: each entry is acknowledged and deleted together with its
-- follow-up write, or not at all. Redis aborts a script at a failing command
-- without undoing what it already wrote, so every check runs before the first
-- write (the first XACK) and no write after it can fail: a script error can
-- only come before anything was written, and the call is safe to repeat.
-- An outcome that cannot be written (its delayed set or dead-letter stream
-- holds another type, a stream has used up its entry ids, too many fields,
-- a bucket is no hash, a count to increment is no count or would overflow)
-- is not acknowledged: the entry stays pending, to be reclaimed and run again
-- once the key is fixed. Writes the outcome does not need are skipped when
-- impossible: the reply to a waiting producer, the counters.
-- A final outcome (not retry or wait) also deletes the job's mark in the
-- cancelling hash, when that hash exists, and writes its kept result hash
-- (deleted first: whatever held that key, the writes cannot fail).
-- A final outcome (done, dead, dead-in-place, ack, cancelled) releases the
-- job's unique key in the same step: compare-and-delete, only while the key
-- still holds this job's id (a job enqueued after the key's TTL ended holds
-- it now). A retry or a wait keeps it. A unique key of another type is left
-- alone and reported as skipped: the outcome is recorded all the same.
-- Only the first caller to acknowledge an entry writes anything for it (XACK
-- returns 0 once it is no longer pending), so a batch retried after a lost
-- reply, or an entry finished by two hosts after a reclaim, never doubles a
-- follow-up job, a retry or a DLQ entry. A final outcome also goes to the
-- waiting producer's reply stream if it still exists (a producer that died
-- let it expire; nothing is written for it).
-- Returns {recorded, held, skipped}: how many outcomes this call recorded;
-- per outcome not recorded, its entry id, the key and why (a flat list of
-- triples); per write skipped (a reply, a unique key's release, the
-- counters), the entry id ('' for counters), the key and why.

-- XADD * fails on a stream whose last id is this one.
local MAX_ID = '18446744073709551615-18446744073709551615'
-- unpack() puts its values on Lua's stack, which holds about 8000: an XADD
-- with more fields than this would fail.
local MAX_FIELD_ARGS = 7000

local group, n = ARGV[1], tonumber(ARGV[2])
local keep_ms, host, now_ms = tonumber(ARGV[3]), ARGV[4], ARGV[5]
-- Where each record's arguments start, after the batch's own.
local FIRST_RECORD = 6
-- A record's fixed arguments before its action's list.
local ACTION_AT, NARGS_AT, ARGS_AT = 7, 8, 9
local NAMES = { zset = 'sorted set' }
-- The counter and reply outcome of an action, where it is not the action's name.
local OUTCOME_OF = { ack = 'expired', ['dead-in-place'] = 'dead', wait = 'throttled' }
-- Actions that leave the job to come back: a waiting producer hears nothing
-- yet, and the job keeps its unique key.
local NO_REPLY = { retry = true, wait = true }

-- Why `key` cannot take a write of `kind` ('stream', 'zset', 'hash'), or
-- false when it can. A missing key is created by the write.
local problems = {}
local function problem_of(key, kind)
  local known = problems[key]
  if known ~= nil then
    return known
  end
  local problem = false
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= kind then
    problem = 'holds a ' .. (NAMES[found] or found) .. ', not a ' .. (NAMES[kind] or kind)
  elseif found == 'stream' then
    local info = redis.call('XINFO', 'STREAM', key)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        if info[i + 1] == MAX_ID then
          problem = 'is a stream that has used up its entry ids (its last id is the maximum)'
        end
        break
      end
    end
  end
  problems[key] = problem
  return problem
end

local function fields_problem(count)
  if count == nil or count < 2 or count % 2 ~= 0 or count > MAX_FIELD_ARGS then
    return 'cannot take an entry of ' .. tostring(count) .. ' field values'
  end
  return false
end

-- The DLQ entry of a "dead-in-place" record: the entry's own fields but
-- replay_count, then ARGV[from..to]. An entry deleted meanwhile adds none.
local COUNT_OF = { total_attempts = 'attempt', replay_count = 'replay_count' }
local function fields_in_place(entry, from, to)
  local out, own = {}, {}
  local found = redis.call('XRANGE', KEYS[1], entry, entry)[1]
  if found then
    local fields = found[2]
    for i = 1, #fields, 2 do
      own[fields[i]] = fields[i + 1]
      if fields[i] ~= 'replay_count' then
        out[#out + 1], out[#out + 2] = fields[i], fields[i + 1]
      end
    end
  end
  for i = from, to, 2 do
    local name, value = ARGV[i], ARGV[i + 1]
    local counted = COUNT_OF[name] and own[COUNT_OF[name]]
    if counted and #counted <= 10 and counted:match('^%d+$') then
      value = counted
    end
    out[#out + 1], out[#out + 2] = name, value
  end
  return out
end

local function push(list, entry, key, why)
  local at = #list
  list[at + 1], list[at + 2], list[at + 3] = entry, key, why
end

-- pcall: a missing group (no entry pending then) must not fail the batch.
local function still_pending(entry)
  local pending = redis.pcall('XPENDING', KEYS[1], group, entry, entry, 1)
  return type(pending) == 'table' and pending.err == nil and #pending > 0
end

-- Key-value writes of a "done" record: where its write count is, or nil.
local kv_at = {}

-- HINCRBY fails on a value that is no integer, or on overflow. So that no
-- increment can fail, every count some record of the batch increments is
-- followed through the batch, assuming the worst of the records before it
-- (any of them may turn out to be acknowledged already, and write nothing):
-- the largest value it may start from, all that is added to it, and whether
-- it may hold something that is not a count.
local SAFE_COUNT = 9.2e18
local function count_of(value)
  if value == false or value == nil then
    return 0
  end
  local digits = value:match('^%-?([1-9]%d*)$') or (value == '0' and '0')
  if digits and #digits <= 19 then
    return tonumber(value)
  end
  return nil
end
local incremented = {}
local function each_write(at, visit)
  local p = at + 1
  for _ = 1, tonumber(ARGV[at]) do
    visit(KEYS[tonumber(ARGV[p])], ARGV[p + 1], ARGV[p + 2], ARGV[p + 3])
    p = p + 4
  end
end
local counts_seen = {}
local function count_state(key, field)
  local fields = counts_seen[key]
  if not fields then
    fields = {}
    counts_seen[key] = fields
  end
  local state = fields[field]
  if not state then
    local start = count_of(redis.call('HGET', key, field))
    state = { largest = math.max(start or 0, 0), added = 0, not_count = start == nil }
    fields[field] = state
  end
  return state
end
-- Why the writes at `at` cannot all be applied, or false; when they can,
-- they are followed for the records after this one.
local function kv_problem(at)
  local problem, key_of_problem = false, nil
  each_write(at, function(key, op, field, arg)
    if problem then
      return
    end
    problem = problem_of(key, 'hash')
    if not problem and op == 'incr' then
      local state = count_state(key, field)
      if state.not_count then
        problem = 'has key ' .. field .. ' holding a value that is not a count, which HINCRBY cannot increment'
      elseif state.largest + state.added + tonumber(arg) >= SAFE_COUNT then
        problem = 'has key ' .. field .. ' whose count would overflow'
      end
    end
    key_of_problem = problem and key
  end)
  if problem then
    return problem, key_of_problem
  end
  each_write(at, function(key, op, field, arg)
    local fields = incremented[key]
    if not (fields and fields[field]) then
      return
    end
    local state = count_state(key, field)
    if op == 'incr' then
      state.added = state.added + tonumber(arg)
    elseif op == 'set' then
      local count = count_of(arg)
      if count == nil then
        state.not_count = true
      else
        state.largest = math.max(state.largest, count)
      end
    end
  end)
  return false
end

-- Checks, reading only. Records are parsed once; `starts` keeps where each begins.
local starts, hold = {}, {}
local held, skipped = {}, {}
local possible = {}
local at = FIRST_RECORD
for i = 1, n do
  starts[i] = at
  local entry, action, nargs = ARGV[at], ARGV[at + ACTION_AT], tonumber(ARGV[at + NARGS_AT])
  local first = at + ARGS_AT
  at = first + nargs
  local key, problem = nil, false
  if action == 'done' then
    key = KEYS[1]
    local p = first + 1
    for _ = 1, tonumber(ARGV[first]) do
      local count = tonumber(ARGV[p])
      problem = problem or fields_problem(count) or problem_of(key, 'stream')
      p = p + (count or 0) + 1
    end
    if p < at then
      kv_at[i] = p
      each_write(p, function(bucket, op, field)
        if op == 'incr' then
          incremented[bucket] = incremented[bucket] or {}
          incremented[bucket][field] = true
        end
      end)
    end
  elseif action == 'retry' or action == 'wait' then
    key = KEYS[2]
    problem = tonumber(ARGV[first]) == nil and 'cannot take a due time of ' .. tostring(ARGV[first])
      or problem_of(key, 'zset')
  elseif action == 'dead' then
    key = KEYS[3]
    problem = fields_problem(nargs) or problem_of(key, 'stream')
  elseif action == 'dead-in-place' then
    key = KEYS[3]
    -- Stream entries never change: the count read with its size still holds.
    problem = fields_problem((tonumber(ARGV[first]) or -1) + nargs - 1) or problem_of(key, 'stream')
  end
  if problem then
    hold[i] = true
    -- Another host may have recorded it meanwhile: then there is nothing to hold.
    if still_pending(entry) then
      push(held, entry, key, problem)
    end
  else
    local outcome = OUTCOME_OF[action] or action
    possible[outcome] = (possible[outcome] or 0) + 1
  end
end

-- Key-value writes, in record order, once every count incremented is known.
for i = 1, n do
  if kv_at[i] and not hold[i] then
    local problem, key = kv_problem(kv_at[i])
    if problem then
      hold[i] = true
      possible['done'] = possible['done'] - 1
      if still_pending(ARGV[starts[i]]) then
        push(held, ARGV[starts[i]], key, problem)
      end
    end
  end
end

local reply_state = {}
for i = 1, n do
  local reply, action = tonumber(ARGV[starts[i] + 2]), ARGV[starts[i] + ACTION_AT]
  if not hold[i] and reply > 0 and not NO_REPLY[action] and reply_state[reply] == nil then
    if redis.call('EXISTS', KEYS[reply]) == 0 then
      reply_state[reply] = 'gone'
    else
      reply_state[reply] = problem_of(KEYS[reply], 'stream')
    end
  end
end

-- A job's mark goes with its final outcome; the hash exists only while
-- some job is asked to stop, so most batches skip this.
local marks = redis.call('EXISTS', KEYS[5]) == 1
if marks then
  local problem = problem_of(KEYS[5], 'hash')
  if problem then
    marks = false
    push(skipped, '', KEYS[5], problem)
  end
end

-- Unique keys released: GET and DEL cannot fail on a string or a missing key.
local releases = {}
for i = 1, n do
  local unique, action = tonumber(ARGV[starts[i] + 4]), ARGV[starts[i] + ACTION_AT]
  if not hold[i] and unique and unique > 0 and not NO_REPLY[action] then
    local problem = problem_of(KEYS[unique], 'string')
    if problem then
      push(skipped, ARGV[starts[i]], KEYS[unique], problem)
    else
      releases[i] = KEYS[unique]
    end
  end
end

-- HINCRBY fails on a field that is no integer or would overflow; 18 digits
-- plus a batch cannot.
local counter_ok = {}
local counters_problem = next(possible) ~= nil and problem_of(KEYS[4], 'hash')
if counters_problem then
  push(skipped, '', KEYS[4], counters_problem)
else
  for outcome in pairs(possible) do
    local value = redis.call('HGET', KEYS[4], outcome)
    local digits = value and (value:match('^%-?([1-9]%d*)$') or (value == '0' and '0'))
    counter_ok[outcome] = not value or (digits ~= nil and #digits <= 18)
    if not counter_ok[outcome] then
      push(skipped, '', KEYS[4], 'has field ' .. outcome .. ' = ' .. value .. ', which HINCRBY cannot increment')
    end
  end
end

-- Writes, none of which can fail now. The first XACK is the first write (on
-- a stream key of another type it fails, before anything was written).
local counts = {}
local recorded = 0
-- Acknowledged entries, deleted with one XDEL at the end (same atomic step).
local acked = {}
for i = 1, n do
  local start = starts[i]
  local entry, job, reply, text = ARGV[start], ARGV[start + 1], tonumber(ARGV[start + 2]), ARGV[start + 3]
  local result, attempt = tonumber(ARGV[start + 5]), ARGV[start + 6]
  local action, nargs = ARGV[start + ACTION_AT], tonumber(ARGV[start + NARGS_AT])
  local first = start + ARGS_AT
  if not hold[i] and redis.call('XACK', KEYS[1], group, entry) == 1 then
    recorded = recorded + 1
    acked[recorded] = entry
    local outcome = OUTCOME_OF[action] or action
    counts[outcome] = (counts[outcome] or 0) + 1
    if reply > 0 and not NO_REPLY[action] then
      local state = reply_state[reply]
      if state == false then
        redis.call('XADD', KEYS[reply], '*', 'job_id', job, 'outcome', outcome, 'text', text)
      elseif state ~= 'gone' then
        push(skipped, entry, KEYS[reply], state)
      end
    end
    if not NO_REPLY[action] then
      if marks then
        redis.call('HDEL', KEYS[5], job)
      end
      if result > 0 and keep_ms > 0 then
        redis.call('DEL', KEYS[result])
        redis.call('HSET', KEYS[result], 'outcome', outcome, 'text', text, 'attempt', attempt,
          'host', host, 'finished_ms', now_ms)
        redis.call('PEXPIRE', KEYS[result], keep_ms)
      end
    end
    if action == 'done' then
      local p = first + 1
      for _ = 1, tonumber(ARGV[first]) do
        local count = tonumber(ARGV[p])
        redis.call('XADD', KEYS[1], '*', unpack(ARGV, p + 1, p + count))
        p = p + count + 1
      end
      if kv_at[i] then
        each_write(kv_at[i], function(bucket, op, field, arg)
          if op == 'set' then
            redis.call('HSET', bucket, field, arg)
          elseif op == 'del' then
            redis.call('HDEL', bucket, field)
          else
            redis.call('HINCRBY', bucket, field, arg)
          end
        end)
      end
    elseif action == 'retry' or action == 'wait' then
      redis.call('ZADD', KEYS[2], ARGV[first], ARGV[first + 1])
    elseif action == 'dead' then
      redis.call('XADD', KEYS[3], '*', unpack(ARGV, first, first + nargs - 1))
    elseif action == 'dead-in-place' then
      redis.call('XADD', KEYS[3], '*', unpack(fields_in_place(entry, first + 1, first + nargs - 1)))
    end
    if releases[i] and redis.call('GET', releases[i]) == job then
      redis.call('DEL', releases[i])
    end
  end
end
for i = 1, recorded, 1000 do
  redis.call('XDEL', KEYS[1], unpack(acked, i, math.min(i + 999, recorded)))
end
for outcome, count in pairs(counts) do
  if counter_ok[outcome] then
    redis.call('HINCRBY', KEYS[4], outcome, count)
  end
end
return {recorded, held, skipped}
