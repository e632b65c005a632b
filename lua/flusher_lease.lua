-- flusher_lease.lua: take or renew a flusher's lease on one shard stream.
-- One flusher writes a shard at a time; another takes over once the lease lapses.
--
-- KEYS[1] lease   string: the owner's name, with a TTL
-- ARGV[1] owner   the flusher's name
-- ARGV[2] ttl     milliseconds
-- Returns 1 when the caller holds the lease now (taken or renewed), 0 when another does.
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0
