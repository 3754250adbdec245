-- One page of a key-value bucket's keys, without their values.
-- KEYS[1] the bucket (a hash), ARGV[1] the cursor, ARGV[2] about how many.
-- Returns {next cursor ("0" at the end), {keys...}}; a bucket of another
-- type is an error (WRONGTYPE), before anything else.
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local keys = {}
for i = 1, #page[2], 2 do
  keys[#keys + 1] = page[2][i]
end
return {page[1], keys}
