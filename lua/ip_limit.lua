-- ip_limit.lua: network vote limits, checked before a vote is cast, for one or two levels
-- at once (an address and its network), all-or-nothing: every level is checked before any
-- is counted, so a vote refused by its network does not use up its address's allowance.
-- One hash holds every level of a network (keys.limits: tag {ip:<campaign>:<network>}, so
-- one slot), one field a level: one HMGET and one HSET a vote, each naming one field a level
-- (a string per level and limit took five commands; a field per datum, three fields a level).
-- Per minute: GCRA (generic cell rate algorithm) on the caller's clock (Redis TIME without
-- one), rate = limit per 60 s with a burst of the same size. Per day: a counter of the campaign's local calendar day.
-- The same script meters SMS code sends and checks and token minting, on hashes of their own.
--
-- KEYS[1]   hash of the network's levels; level i's field is its name p = ARGV[3i] ("" for
--           the network itself, the address's part inside the network for an address),
--           its value "<day>|<count>|<tat>": the day it counts (that day's ARGV[1]), its
--           votes on that day, and the GCRA's theoretical arrival time, unix ms (0 or past =
--           no debt; kept across a new day)
-- ARGV[1]   day counter expiry, unix seconds (a day after the local day ends); it also names
--           the day: a level whose <day> differs counts from 0. The hash expires then, set
--           when a level starts a new day.
-- ARGV[2]   "1" = peek: answer as if one more vote came, but write nothing
-- ARGV[3i]   field of level i
-- ARGV[3i+1] per-minute limit of level i (0 = no limit)
-- ARGV[3i+2] per-day limit of level i (0 = no limit)
-- ARGV[3n+3] (optional, n = the number of levels) now, unix milliseconds: the web tier's
--           clock, which names the day already (one redis.call fewer); TIME without it
-- Called as a function (limit_and_cast.lua) it takes four arguments, none on its own: the
-- offsets of its KEYS and ARGV in the call's (indices + k and + a; its ARGV last, as it
-- counts its levels by #ARGV), now, unix ms, the caller's, and ARGV[1], the
-- caller's own copy of it (the vote's quota expiry is the same string): its call then
-- holds only the levels, from ARGV[a + 3] on, and never peeks.
-- Returns {allowed, retry_after_ms, load_1, count_1, load_2, count_2, ...}:
--   allowed 1/0; retry_after_ms = the longest wait of a refusing level, -1 when a day limit
--   refused; load_i = how full level i's minute bucket is after this vote (0..1000);
--   count_i = its votes of the day including this one (0 when refused).
local period = 60000
local k, a, now, day = ...  -- limit_and_cast.lua's; nil on its own
k, a = k or 0, a or 0
local key, peek = KEYS[k + 1], not day and ARGV[a + 2] == '1'
day = day or ARGV[a + 1]
local levels = math.floor((#ARGV - a - 2) / 3)
-- (x + 0 turns a string into a number with one conversion; tonumber makes two; a number
-- goes back into a string by string.format's %d, as ".." formats it with %.14g, a float
-- conversion that cost ~2,500 instructions each, four a vote)

if levels > 2 then
  return redis.error_reply('ip_limit.lua: one or two levels (an address and its network)')
end
-- no table of the fields, nor of the writes: each is work for Lua's collector (tables cost
-- a vote ~10k instructions before they went)
local f1, f2 = ARGV[a + 3], ARGV[a + 6]
local stored
if levels == 2 then
  stored = redis.call('HMGET', key, f1, f2)  -- both levels at once
else
  stored = redis.call('HMGET', key, f1)
end
now = now or ARGV[a + 3 * levels + 3]
if now then
  now = now + 0
else
  local t = redis.call('TIME')
  now = t[1] * 1000 + math.floor(t[2] / 1000)
end
local match, format = string.match, string.format
local refused, wait, new_day = false, 0, false

-- Level i as if it allows the vote (the common case): its new value, how full its minute
-- bucket is then (0..1000) and its votes of the day with this one; a refusal is noted in
-- refused and wait, and replaces the reply below.
local function level(i)
  local per_min, per_day = ARGV[a + 3 * i + 1] + 0, ARGV[a + 3 * i + 2] + 0
  local d, count, tat
  if stored[i] then
    d, count, tat = match(stored[i], '^(%d+)|(%d+)|(.*)$')
  end
  if d == day then
    count = count + 0
  else  -- the level's first vote of the day
    count, new_day = 0, true
  end
  local load, new_tat = 0, 0
  if per_min > 0 then
    tat = (tat or 0) + 0
    if tat < now then
      tat = now
    end
    new_tat = math.ceil(tat + period / per_min)  -- whole ms (stricter by < 1 ms a vote)
    local allow_at = new_tat - period
    if allow_at > now then
      refused = true
      if wait >= 0 then
        wait = math.max(wait, math.ceil(allow_at - now))
      end
    end
    load = math.min(1000, math.floor((new_tat - now) * 1000 / period))
  end
  if per_day > 0 and count >= per_day then
    refused = true
    wait = -1
  end
  return format('%s|%d|%d', day, count + 1, new_tat), load, count + 1
end

local v1, load1, count1 = level(1)
if levels == 2 then
  local v2, load2, count2 = level(2)
  if refused then  -- nothing counted anywhere
    return {0, wait, 1000, 0, 1000, 0}
  end
  if not peek then
    redis.call('HSET', key, f1, v1, f2, v2)  -- both levels, one command
    if new_day then
      redis.call('EXPIREAT', key, day)
    end
  end
  return {1, 0, load1, count1, load2, count2}
end
if refused then
  return {0, wait, 1000, 0}
end
if not peek then
  redis.call('HSET', key, f1, v1)
  if new_day then
    redis.call('EXPIREAT', key, day)
  end
end
return {1, 0, load1, count1}
