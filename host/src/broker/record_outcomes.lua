-- Records the outcomes of a batch of delivered jobs in one atomic step.
--
-- KEYS[1] the queue's stream, KEYS[2] its delayed sorted set, KEYS[3] its
-- dead-letter stream, KEYS[4] its counters hash (done, retry, dead, expired),
-- KEYS[5..] reply streams of producers waiting for some of these jobs
-- ARGV[1] consumer group, ARGV[2] number of records, then per record:
--   entry id, job id, reply (index into KEYS, 0 for none), reply text (the
--   output or the final error), action, n, and the action's n arguments:
--   "done"  number of follow-up jobs, then per job: field count, its fields (k, v, ...)
--   "retry" due time (ms since epoch), the next attempt's fields as a JSON list
--   "dead"  the dead-letter entry's fields (k, v, ...)
--   "ack"   none (expired jobs)
--
-- Guarantee: each entry is acknowledged and deleted together with its
-- follow-up write, or not at all. Only the first caller to acknowledge an
-- entry writes anything for it (XACK returns 0 once it is no longer pending),
-- so a batch retried after a lost reply, or an entry finished by two hosts
-- after a reclaim, never doubles a follow-up job, a retry or a DLQ entry. A
-- final outcome also goes to the waiting producer's reply stream if it still
-- exists (a producer that died let it expire; nothing is written for it).
-- Returns how many outcomes this call recorded.

local counts = {}
local recorded = 0
-- Acknowledged entries, deleted with one XDEL at the end (same atomic step).
local acked = {}
local at = 3
for _ = 1, tonumber(ARGV[2]) do
  local entry, job, reply, text, action = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2]), ARGV[at + 3], ARGV[at + 4]
  local nargs = tonumber(ARGV[at + 5])
  local first = at + 6
  at = first + nargs
  if redis.call('XACK', KEYS[1], ARGV[1], entry) == 1 then
    recorded = recorded + 1
    acked[recorded] = entry
    local outcome = action == 'ack' and 'expired' or action
    counts[outcome] = (counts[outcome] or 0) + 1
    if reply > 0 and action ~= 'retry' and redis.call('EXISTS', KEYS[reply]) == 1 then
      redis.call('XADD', KEYS[reply], '*', 'job_id', job, 'outcome', outcome, 'text', text)
    end
    if action == 'done' then
      local p = first + 1
      for _ = 1, tonumber(ARGV[first]) do
        local count = tonumber(ARGV[p])
        redis.call('XADD', KEYS[1], '*', unpack(ARGV, p + 1, p + count))
        p = p + count + 1
      end
    elseif action == 'retry' then
      redis.call('ZADD', KEYS[2], ARGV[first], ARGV[first + 1])
    elseif action == 'dead' then
      redis.call('XADD', KEYS[3], '*', unpack(ARGV, first, first + nargs - 1))
    end
  end
end
for i = 1, recorded, 1000 do
  redis.call('XDEL', KEYS[1], unpack(acked, i, math.min(i + 999, recorded)))
end
for outcome, count in pairs(counts) do
  redis.call('HINCRBY', KEYS[4], outcome, count)
end
return recorded
