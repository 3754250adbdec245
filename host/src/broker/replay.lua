-- Moves one dead-letter entry back onto the stream it came from, as a fresh job.
--
-- KEYS[1] the dead-letter stream, KEYS[2] the queue's stream
-- ARGV[1] the DLQ entry id, ARGV[2] most replays allowed (ignored when ARGV[3] is "force")
--
-- Guarantee: the XADD to the stream and the XDEL from the DLQ are one atomic
-- step, so a replayed job is neither lost nor doubled. The enrichment fields
-- are dropped (and a fleet-wide limit wait's `rate_paid`, `throttled`), `attempt` restarts at 1 and `replay_count` grows by one.
-- Returns {"ok", new entry id}, {"missing"} or {"frozen", replay count}.

local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entries == 0 then
  return {'missing'}
end
local fields = entries[1][2]
local enrichment = {
  original_id = true, original_stream = true, failed_at = true, total_attempts = true,
  last_error = true, consumer_group = true, replay_count = true, attempt = true,
  -- what a wait for a fleet-wide limit carried: the replay queues afresh
  rate_paid = true, throttled = true,
}
local replays = 0
local kept = {}
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if name == 'replay_count' then
    replays = tonumber(value) or 0
  end
  if not enrichment[name] then
    kept[#kept + 1] = name
    kept[#kept + 1] = value
  end
end
if ARGV[3] ~= 'force' and replays >= tonumber(ARGV[2]) then
  return {'frozen', tostring(replays)}
end
kept[#kept + 1] = 'attempt'
kept[#kept + 1] = '1'
kept[#kept + 1] = 'replay_count'
kept[#kept + 1] = tostring(replays + 1)
local id = redis.call('XADD', KEYS[2], '*', unpack(kept))
redis.call('XDEL', KEYS[1], ARGV[1])
return {'ok', id}
