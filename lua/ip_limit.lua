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
-- KEYS[1]   hash of the network's levels; level 1's field is ARGV[3]'s <field> ("" for
--           the network itself, the address's part inside the network for an address),
--           level 2's (the network, after its address) is ""; a field's value is
--           "<day>|<count>|<tat>": the day it counts (that day's ARGV[1]), its votes on that
--           day, and the GCRA's theoretical arrival time, unix ms (0 or past = no debt; kept
--           across a new day)
-- ARGV[1]   day counter expiry, unix seconds (a day after the local day ends); it also names
--           the day: a level whose <day> differs counts from 0. The hash expires then, set
--           when a level starts a new day.
-- ARGV[2]   what to do and answer: "0" count the vote and answer the loads and counts
--           below; "1" peek: answer as if one more vote came, but write nothing; "2" count
--           the vote and answer just 1 when it is allowed (for a caller that needs no
--           loads: Valkey looks for a table reply's status fields before it converts each
--           element, and the table was ~9k of a Cluster vote's instructions)
-- ARGV[3]   the levels, packed in one string (redis/scripts.py levels_arg; one argument, not
--           six: each costs the server a parse, a Lua string and a free a call):
--           "<field>|<per minute>|<per day>" for one level, then "|<per minute>|<per day>"
--           for the network after its address; a limit of 0 = no limit
-- ARGV[4]   (optional) now, unix milliseconds: the web tier's clock, which names the day
--           already (one redis.call fewer); TIME without it
-- Called as a function (limit_and_cast.lua) it takes four arguments, none on its own: the
-- offset of its key in the call's KEYS (KEYS[k + 1]), its levels (ARGV[3]'s string), now,
-- unix ms, and the day's expiry (the vote's quota expiry is the same string). It never
-- peeks, and answers true when it allows the vote (its caller reads only a refusal's reply).
-- Returns {allowed, retry_after_ms, load_1, count_1, load_2, count_2}, or 1 for an allowed
-- vote with ARGV[2] "2":
--   allowed 1/0; retry_after_ms = the longest wait of a refusing level, -1 when a day limit
--   refused; load_i = how full level i's minute bucket is after this vote (0..1000);
--   count_i = its votes of the day including this one (0 when refused).
local period = 60000
local k, spec, now, day = ...  -- limit_and_cast.lua's; nil on its own
local inner = day ~= nil
k = k or 0
local key, mode = KEYS[k + 1], not inner and ARGV[2]
local peek = mode == '1'
day = day or ARGV[1]
spec = spec or ARGV[3]
-- (x + 0 turns a string into a number with one conversion; tonumber makes two; a number
-- goes back into a string by string.format's %d, as ".." formats it with %.14g, a float
-- conversion that cost ~2,500 instructions each, four a vote)
local match, format = string.match, string.format
local f1, pm1, pd1, pm2, pd2 = match(spec, '^([^|]*)|(%d+)|(%d+)|?(%d*)|?(%d*)$')
local levels = pd2 ~= '' and 2 or 1
if not f1 or (pm2 ~= '') ~= (pd2 ~= '') then
  return redis.error_reply('ip_limit.lua: levels "<field>|<per minute>|<per day>", then '
    .. 'the network\'s "|<per minute>|<per day>": one or two levels')
end
-- no table of the fields, nor of the writes: each is work for Lua's collector (tables cost
-- a vote ~10k instructions before they went)
local stored
if levels == 2 then
  stored = redis.call('HMGET', key, f1, '')  -- both levels at once
else
  stored = redis.call('HMGET', key, f1)
end
now = now or ARGV[4]
if now then
  now = now + 0
else
  local t = redis.call('TIME')
  now = t[1] * 1000 + math.floor(t[2] / 1000)
end
local refused, wait, new_day = false, 0, false

-- Each level as if it allows the vote (the common case): its new value, how full its minute
-- bucket is then (0..1000) and its votes of the day with this one; a refusal is noted in
-- refused and wait, and replaces the reply below. A loop, not a function: a closure and its
-- upvalues are objects for Lua's collector, every call.
local v1, load1, count1, v2, load2, count2
for i = 1, levels do
  local per_min, per_day
  if i == 1 then
    per_min, per_day = pm1 + 0, pd1 + 0
  else
    per_min, per_day = pm2 + 0, pd2 + 0
  end
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
  -- the day by .., not %s (string.format sends a %s through sprintf)
  local v = day .. format('|%d|%d', count + 1, new_tat)
  if i == 1 then
    v1, load1, count1 = v, load, count + 1
  else
    v2, load2, count2 = v, load, count + 1
  end
end

if refused then  -- nothing counted anywhere
  if levels == 2 then
    return {0, wait, 1000, 0, 1000, 0}
  end
  return {0, wait, 1000, 0}
end
if not peek then
  if levels == 2 then
    redis.call('HSET', key, f1, v1, '', v2)  -- both levels, one command
  else
    redis.call('HSET', key, f1, v1)
  end
  if new_day then
    redis.call('EXPIREAT', key, day)
  end
end
if inner then
  return true
elseif mode == '2' then
  return 1
end
if levels == 2 then
  return {1, 0, load1, count1, load2, count2}
end
return {1, 0, load1, count1}
