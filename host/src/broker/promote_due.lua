-- Moves jobs whose time has come from the delayed set onto the stream.
--
-- KEYS[1] the delayed sorted set (score: due time in ms), KEYS[2] the stream,
-- KEYS[3] the dead-letter stream
-- ARGV[1] now (ms since epoch), ARGV[2] most jobs to move in one call,
-- ARGV[3] now as RFC 3339 (the failed_at of a member that is not a job)
--
-- Members are the entry's fields (name, value, ...) as a MessagePack array of
-- byte strings, or, as older hosts wrote them, a JSON list of strings.
--
-- Guarantee: each member is added to the stream (or, when it is not a list of
-- fields, to the dead-letter stream with the reason) and then removed from the
-- set, so however many hosts call this at once, a due job is moved exactly
-- once. The add is the first write for its member and the ZREM after it cannot
-- fail (the set's type is known from the ZRANGEBYSCORE): if an add fails, the
-- script stops with every earlier member moved whole and this one untouched.
-- Returns how many members were moved, or -1 when the delayed set holds
-- another type (nothing can be promoted until it is fixed; nothing is written).

local function fields_of(member)
  local decode = string.byte(member, 1) == 91 and cjson.decode or cmsgpack.unpack
  local ok, fields = pcall(decode, member)
  if not ok or type(fields) ~= 'table' or #fields == 0 or #fields % 2 ~= 0 or #fields > 200 then
    return nil
  end
  for _, value in ipairs(fields) do
    if type(value) ~= 'string' then
      return nil
    end
  end
  return fields
end

local found = redis.call('TYPE', KEYS[1])['ok']
if found ~= 'zset' and found ~= 'none' then
  return -1
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local fields = fields_of(member)
  if fields then
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  else
    redis.call('XADD', KEYS[3], '*', 'delayed_member', member, 'original_stream', KEYS[2],
      'failed_at', ARGV[3], 'total_attempts', '0',
      'last_error', 'malformed delayed job: not a list of entry fields', 'replay_count', '0')
  end
  redis.call('ZREM', KEYS[1], member)
end
return #due
