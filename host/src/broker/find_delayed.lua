-- One page of a scan for a job's member in a delayed set, run inside Redis
-- so that only the match travels (members hold whole jobs).
--
-- KEYS[1] the delayed set; ARGV[1] the job id, ARGV[2] the ZSCAN cursor,
-- ARGV[3] members per page
--
-- Members are MessagePack arrays of field names and values (JSON lists
-- from older hosts); one that decodes to neither is skipped.
-- Returns {cursor, member or false, score or false}; cursor "0" when the
-- scan is over; a fourth element, the key's type, when it is no sorted set.

local job = ARGV[1]
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then
  return { '0', false, false, false }
elseif t ~= 'zset' then
  return { '0', false, false, t }
end
local scan = redis.call('ZSCAN', KEYS[1], ARGV[2], 'COUNT', ARGV[3])
local pairs_ = scan[2]
for i = 1, #pairs_, 2 do
  local member = pairs_[i]
  local ok, fields
  if member:sub(1, 1) == '[' then
    ok, fields = pcall(cjson.decode, member)
  else
    ok, fields = pcall(cmsgpack.unpack, member)
  end
  if ok and type(fields) == 'table' then
    for f = 1, #fields - 1, 2 do
      if fields[f] == 'job_id' then
        if fields[f + 1] == job then
          return { scan[1], member, pairs_[i + 1], false }
        end
        break
      end
    end
  end
end
return { scan[1], false, false, false }
