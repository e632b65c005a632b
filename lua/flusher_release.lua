-- flusher_release.lua: give a shard stream's lease up (a flusher stopping cleanly), so that
-- another flusher takes the shard at once instead of after the TTL.
--
-- KEYS[1] lease   string: the owner's name
-- ARGV[1] owner   the flusher's name
-- Returns 1 when the lease was the caller's and is gone, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
