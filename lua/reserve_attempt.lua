-- reserve_attempt.lua: check and count one sign-in or bearer-token attempt in one step.
-- The attempt is counted before the credential is checked, so however many requests race,
-- no more than the limit are ever checked in a window; a success gives it back
-- (refund_attempt.lua). Each window starts with its first attempt and is not extended.
--
-- KEYS[1..n] counters   strings, all of one hash slot (an address and its network, or an
--                       account)
-- ARGV[1]    window in seconds
-- ARGV[2..n+1] the limit of each counter, in the order of KEYS
-- Returns {1, attempts left after this one} or {0, seconds until the full window ends}.
local window = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  if n >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('TTL', key)
    if ttl < 0 then
      redis.call('EXPIRE', key, window)
      ttl = window
    end
    return {0, ttl}
  end
end
local left = -1
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 or redis.call('TTL', key) < 0 then
    redis.call('EXPIRE', key, window)
  end
  local l = tonumber(ARGV[i + 1]) - n
  if left < 0 or l < left then
    left = l
  end
end
return {1, left}
