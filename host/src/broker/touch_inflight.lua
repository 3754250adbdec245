-- Heartbeat: keeps this host's in-flight entries fresh so no other host
-- reclaims them while their jobs are still running.
--
-- KEYS[1] the stream; ARGV[1] consumer group, ARGV[2] this consumer, ARGV[3..] entry ids
--
-- Guarantee: only entries still pending under this consumer are touched
-- (XCLAIM ... JUSTID resets their idle time without counting a delivery); an
-- entry another host has already reclaimed is left with that host.
-- Returns how many entries were touched.

local touched = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID')
    touched = touched + 1
  end
end
return touched
