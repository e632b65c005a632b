-- ip_limit.lua: per-network vote limits, checked before a vote is cast.
-- Both keys carry the hash tag of one network prefix ({ip:<campaign>:<prefix>}): one slot.
-- Per minute: GCRA (generic cell rate algorithm) on Redis TIME, rate = limit per 60 s with a
-- burst of the same size. Per day: a counter of the campaign's local calendar day.
-- The same script meters SMS code sends (per network and per phone), with their own keys.
--
-- KEYS[1] gcra   string: theoretical arrival time, milliseconds
-- KEYS[2] day    string: votes from this prefix on the local day
-- ARGV[1] per-minute limit (0 = no limit)
-- ARGV[2] per-day limit (0 = no limit)
-- ARGV[3] day counter expiry, unix seconds (a day after the local day ends)
-- ARGV[4] (optional) "1" = peek: answer as if one more vote came, but write nothing
-- Returns {allowed, retry_after_ms, minute_load_permille, day_count}:
--   allowed 1/0; retry_after_ms = -1 when the day limit is what refused;
--   minute_load_permille = how full the minute bucket is after this vote (0..1000);
--   day_count = votes of the day including this one (when allowed).
local rate_key, day_key = KEYS[1], KEYS[2]
local per_min, per_day = tonumber(ARGV[1]), tonumber(ARGV[2])
local peek = ARGV[4] == '1'
local period = 60000

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local new_tat = now
if per_min > 0 then
  local interval = period / per_min
  local tat = tonumber(redis.call('GET', rate_key) or '0')
  if tat < now then
    tat = now
  end
  new_tat = tat + interval
  local allow_at = new_tat - period
  if allow_at > now then
    return {0, math.ceil(allow_at - now), 1000, 0}
  end
end
local day_count = tonumber(redis.call('GET', day_key) or '0')
if per_day > 0 and day_count >= per_day then
  return {0, -1, 1000, day_count}
end

local load = 0
if per_min > 0 then
  load = math.floor((new_tat - now) * 1000 / period)
end
if peek then
  return {1, 0, load, day_count + 1}
end
if per_min > 0 then
  redis.call('SET', rate_key, tostring(new_tat), 'PX', math.ceil(new_tat - now))
end
day_count = redis.call('INCR', day_key)
redis.call('EXPIREAT', day_key, tonumber(ARGV[3]))
return {1, 0, load, day_count}
