-- Records the outcome of one delivered job in one atomic step.
--
-- KEYS[1] the queue's stream, KEYS[2] its delayed sorted set, KEYS[3] its dead-letter stream,
-- KEYS[4] its counters hash (field per outcome: done, retry, dead, expired)
-- ARGV[1] consumer group, ARGV[2] stream entry id, ARGV[3] action:
--   "done"  ARGV[4] = number of follow-up jobs, then per job: field count, then its fields (k, v, ...)
--   "retry" ARGV[4] = due time (ms since epoch), ARGV[5] = the next attempt's fields as a JSON list
--   "dead"  ARGV[4..] = the dead-letter entry's fields (k, v, ...)
--   "ack"   nothing more (expired jobs)
--
-- Guarantee: the entry is acknowledged and deleted together with its follow-up
-- write, or not at all. Only the first caller to acknowledge the entry writes
-- anything (XACK returns 0 once it is no longer pending), so a batch retried
-- after a lost reply, or an entry finished by two hosts after a reclaim,
-- never doubles a follow-up job, a retry or a DLQ entry.
-- Returns 1 when this call recorded the outcome, 0 when it was already recorded.

if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])

local action = ARGV[3]
redis.call('HINCRBY', KEYS[4], action == 'ack' and 'expired' or action, 1)
if action == 'done' then
  local jobs = tonumber(ARGV[4])
  local at = 5
  for _ = 1, jobs do
    local count = tonumber(ARGV[at])
    redis.call('XADD', KEYS[1], '*', unpack(ARGV, at + 1, at + count))
    at = at + count + 1
  end
elseif action == 'retry' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
elseif action == 'dead' then
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4))
end
return 1
