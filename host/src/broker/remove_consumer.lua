-- Removes a consumer from the group when its host is gone and it holds nothing.
--
-- KEYS[1] the stream, KEYS[2] the consumer's liveness key
-- ARGV[1] consumer group, ARGV[2] the consumer
--
-- Guarantee: XGROUP DELCONSUMER drops the consumer's pending entries with it,
-- so the checks and the delete run in one atomic step: a consumer whose host
-- renewed its liveness key, or that holds an entry, is never removed, and no
-- entry is ever lost this way.
-- Returns 1 when removed, 0 otherwise.

if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
