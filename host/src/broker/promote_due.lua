-- Moves jobs whose time has come from the delayed set onto the stream.
--
-- KEYS[1] the delayed sorted set (score: due time in ms), KEYS[2] the stream
-- ARGV[1] now (ms since epoch), ARGV[2] most jobs to move in one call
--
-- Guarantee: each member is added to the stream and removed from the set in
-- the same atomic step, so however many hosts call this at once, a due job is
-- moved exactly once. Members are JSON lists of the entry's fields.
-- Returns how many jobs were moved.

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(member)))
  redis.call('ZREM', KEYS[1], member)
end
return #due
