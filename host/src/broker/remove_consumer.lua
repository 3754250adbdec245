-- Removes a consumer from the group, but only when it holds no pending entry.
--
-- KEYS[1] the stream; ARGV[1] consumer group, ARGV[2] the consumer
--
-- Guarantee: XGROUP DELCONSUMER drops the consumer's pending entries with it,
-- so the check and the delete run in one atomic step: a consumer that read an
-- entry in between is never removed, and no entry is ever lost this way.
-- Returns 1 when removed, 0 when it still holds entries.

local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
