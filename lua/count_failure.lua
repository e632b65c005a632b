-- count_failure.lua: count one attempt in a fixed window (the objection form's limit).
-- The window starts with the first attempt and is not extended by later ones.
--
-- KEYS[1] counter   string, the attempts of one address or network in the current window
-- ARGV[1] window in seconds
-- Returns {attempts so far, seconds until the window ends}.
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
