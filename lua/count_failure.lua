-- count_failure.lua: count one failed attempt in a fixed window (console login throttle).
-- The window starts with the first failure and is not extended by later ones.
--
-- KEYS[1] counter   string, the failures of one address in the current window
-- ARGV[1] window in seconds
-- Returns {failures so far, seconds until the window ends}.
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
