-- Heartbeat: keeps this host's in-flight entries fresh so no other host
-- reclaims them while their jobs are still running, and says since when
-- it holds each (for `jobhost job`: touching resets an entry's idle time).
--
-- KEYS[1] the stream, KEYS[2] this host's hash of held entries (field the
-- entry id, value since when it is held, ms); ARGV[1] consumer group,
-- ARGV[2] this consumer, ARGV[3] the hash's time to live (ms), ARGV[4..]
-- pairs of entry id and since when this host holds it
--
-- Guarantee: only entries still pending under this consumer are touched
-- (XCLAIM ... JUSTID resets their idle time without counting a delivery); an
-- entry another host has already reclaimed is left with that host. The
-- hash is written only when it can be (a key of another type is skipped).
-- Returns how many entries were touched.

local held_type = redis.call('TYPE', KEYS[2])['ok']
local write_held = held_type == 'none' or held_type == 'hash'
if write_held then
  redis.call('DEL', KEYS[2])
end
local touched = 0
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID')
    touched = touched + 1
    if write_held then
      redis.call('HSET', KEYS[2], id, ARGV[i + 1])
    end
  end
end
if write_held and touched > 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return touched
