-- refund_attempt.lua: give back an attempt reserved by reserve_attempt.lua whose
-- credential was right, so people and machines that sign in correctly use no budget.
-- A counter that has expired meanwhile stays gone (never negative, never without a TTL).
--
-- KEYS[1..n] counters   strings, all of one hash slot (as reserved)
-- Returns the number of counters decremented.
local done = 0
for _, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  if n > 0 then
    redis.call('DECR', key)
    done = done + 1
  end
end
return done
