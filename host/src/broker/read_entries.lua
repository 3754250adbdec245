-- Reads entries for a consumer inside Redis, so that an entry larger than the
-- host takes never travels to it: only its id and size do.
--
-- KEYS[1] the queue's stream
-- ARGV[1] "new" (XREADGROUP of entries never delivered, without BLOCK: a
--         script cannot block) or "stale" (XAUTOCLAIM of idle entries),
-- ARGV[2] consumer group, ARGV[3] consumer, ARGV[4] count, ARGV[5] the
-- largest entry the host takes in bytes (field names plus values); for
-- "stale" also ARGV[6] min idle time in ms, ARGV[7] the scan's cursor.
--
-- Returns per entry {id, {field, value, ...}} when it is at most the largest,
-- else {id, size, number of field names and values}; "new" returns that list, "stale" {next cursor, list}.
-- Entries deleted while pending (nil fields) are left out.

local mode, group, consumer, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local largest = tonumber(ARGV[5])

local function screen(entries)
  local out = {}
  for _, entry in ipairs(entries) do
    local fields = type(entry) == 'table' and entry[2]
    if type(fields) == 'table' then
      local size = 0
      for i = 1, #fields do
        size = size + #fields[i]
      end
      if size > largest then
        out[#out + 1] = {entry[1], size, #fields}
      else
        out[#out + 1] = entry
      end
    end
  end
  return out
end

if mode == 'new' then
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', KEYS[1], '>')
  if not reply then
    return {}
  end
  return screen(reply[1][2])
end
local reply = redis.call('XAUTOCLAIM', KEYS[1], group, consumer, ARGV[6], ARGV[7], 'COUNT', count)
return {reply[1], screen(reply[2])}
