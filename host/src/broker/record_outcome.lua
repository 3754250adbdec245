-- Records the outcome of one delivered job in one atomic step.
--
-- KEYS[1] the queue's stream, KEYS[2] its delayed sorted set, KEYS[3] its dead-letter stream,
-- KEYS[4] its counters hash (field per outcome: done, retry, dead, expired),
-- KEYS[5] (optional) the reply stream of a producer waiting for this job
-- ARGV[1] consumer group, ARGV[2] stream entry id, ARGV[3] job id,
-- ARGV[4] what a waiting producer is told (the output, or the final error), ARGV[5] action:
--   "done"  ARGV[6] = number of follow-up jobs, then per job: field count, then its fields (k, v, ...)
--   "retry" ARGV[6] = due time (ms since epoch), ARGV[7] = the next attempt's fields as a JSON list
--   "dead"  ARGV[6..] = the dead-letter entry's fields (k, v, ...)
--   "ack"   nothing more (expired jobs)
--
-- Guarantee: the entry is acknowledged and deleted together with its follow-up
-- write, or not at all. Only the first caller to acknowledge the entry writes
-- anything (XACK returns 0 once it is no longer pending), so a batch retried
-- after a lost reply, or an entry finished by two hosts after a reclaim,
-- never doubles a follow-up job, a retry or a DLQ entry. A final outcome is
-- also sent to the producer's reply stream, if it still exists (a producer
-- that died let it expire; nothing is written for it).
-- Returns 1 when this call recorded the outcome, 0 when it was already recorded.

if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])

local action = ARGV[5]
local outcome = action == 'ack' and 'expired' or action
redis.call('HINCRBY', KEYS[4], outcome, 1)
if KEYS[5] and action ~= 'retry' and redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('XADD', KEYS[5], '*', 'job_id', ARGV[3], 'outcome', outcome, 'text', ARGV[4])
end
if action == 'done' then
  local jobs = tonumber(ARGV[6])
  local at = 7
  for _ = 1, jobs do
    local count = tonumber(ARGV[at])
    redis.call('XADD', KEYS[1], '*', unpack(ARGV, at + 1, at + count))
    at = at + count + 1
  end
elseif action == 'retry' then
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[7])
elseif action == 'dead' then
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, 6))
end
return 1
