-- Renews the generator lease, only for its holder.
--
-- KEYS[1] the lease; ARGV[1] the holder's name, ARGV[2] time to live (ms)
--
-- Guarantee: a generator whose lease expired and was taken by another never
-- extends the other's lease; it learns (0) that it must stop generating.
-- Returns 1 when renewed, 0 when the lease is not (or no longer) held by ARGV[1].

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
