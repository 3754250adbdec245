-- One page of a scan for a job's entry in a stream, run inside Redis so
-- that only the match travels (entries can be large; a page of them is
-- read here, not sent).
--
-- KEYS[1] the stream; ARGV[1] the job id, ARGV[2] where the page starts
-- (an entry id, exclusive, or "" for the end the scan starts from),
-- ARGV[3] "oldest" or "newest" first, ARGV[4] entries per page
--
-- An entry holds the job when its job_id field is the id, or, having no
-- job_id (a plain XADD), when its entry id is.
-- Returns {match, last}: the matching entry id or false, and the last
-- entry id read (false when the stream has no more); {false, false, type}
-- when the key holds another type.

local job, after, newest, count = ARGV[1], ARGV[2], ARGV[3] == 'newest', tonumber(ARGV[4])
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then
  return { false, false, false }
elseif t ~= 'stream' then
  return { false, false, t }
end
local page
if newest then
  page = redis.call('XREVRANGE', KEYS[1], after == '' and '+' or '(' .. after, '-', 'COUNT', count)
else
  page = redis.call('XRANGE', KEYS[1], after == '' and '-' or '(' .. after, '+', 'COUNT', count)
end
for _, entry in ipairs(page) do
  local id, fields = entry[1], entry[2]
  local own = nil
  for i = 1, #fields, 2 do
    if fields[i] == 'job_id' then
      own = fields[i + 1]
      break
    end
  end
  if own == job or (own == nil and id == job) then
    return { id, id, false }
  end
end
if #page < count then
  return { false, false, false }
end
return { false, page[#page][1], false }
