-- flusher_hold.lua: before a flusher commits what it read from one shard stream, on the
-- server it read it from: renew the lease and check that this server still holds the last
-- entry read. The lease write gives the connection a replication offset past every entry
-- of the batch, so the WAIT/WAITAOF sent next on the same connection covers them all; a
-- server that lacks the entry (it was read from a stale or replaced master) writes nothing.
--
-- KEYS[1] lease   string: the owner's name, with a TTL (flusher_lease.lua)
-- KEYS[2] ledger  the shard's stream (same group tag)
-- ARGV[1] owner   the flusher's name
-- ARGV[2] ttl     milliseconds
-- ARGV[3] last    id of the last entry read, to be committed
-- Returns 1 held (lease renewed), 0 another flusher holds the lease, -1 the stream here
-- lacks the entry.
local owner = redis.call('GET', KEYS[1])
if owner ~= false and owner ~= ARGV[1] then
  return 0
end
if #redis.call('XRANGE', KEYS[2], ARGV[3], ARGV[3]) == 0 then
  return -1
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
