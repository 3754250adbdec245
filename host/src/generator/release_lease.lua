-- Gives the generator lease up, only for its holder.
--
-- KEYS[1] the lease; ARGV[1] the holder's name
--
-- Guarantee: never deletes a lease another generator holds.
-- Returns 1 when released, 0 otherwise.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
