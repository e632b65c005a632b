-- ip_limit.lua: network vote limits, checked before a vote is cast, for one or more levels
-- at once (an address and its network), all-or-nothing: every level is checked before any
-- is counted, so a vote refused by its network does not use up its address's allowance.
-- All keys carry one hash tag, that of the network ({ip:<campaign>:<network>}): one slot.
-- Per minute: GCRA (generic cell rate algorithm) on Redis TIME, rate = limit per 60 s with a
-- burst of the same size. Per day: a counter of the campaign's local calendar day.
-- The same script meters SMS code sends (per network and per phone), with their own keys.
--
-- KEYS[2i-1] gcra of level i   string: theoretical arrival time, milliseconds
-- KEYS[2i]   day of level i    string: votes at this level on the local day
-- ARGV[1]    day counter expiry, unix seconds (a day after the local day ends)
-- ARGV[2]    "1" = peek: answer as if one more vote came, but write nothing
-- ARGV[2i+1] per-minute limit of level i (0 = no limit)
-- ARGV[2i+2] per-day limit of level i (0 = no limit)
-- ARGV[2n+3] (optional, n = the number of levels) now, unix milliseconds: limit_and_cast.lua
--            passes the TIME it read
-- Returns {allowed, retry_after_ms, load_1, count_1, load_2, count_2, ...}:
--   allowed 1/0; retry_after_ms = the longest wait of a refusing level, -1 when a day limit
--   refused; load_i = how full level i's minute bucket is after this vote (0..1000);
--   count_i = its votes of the day including this one (0 when refused).
local period = 60000
local expire_at, peek = tonumber(ARGV[1]), ARGV[2] == '1'
local levels = #KEYS / 2

local stored = redis.call('MGET', unpack(KEYS))  -- every level's tat and count at once
local now = tonumber(ARGV[2 * levels + 3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local new_tats, counts, loads = {}, {}, {}
local refused, wait = false, 0
for i = 1, levels do
  local per_min, per_day = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  local new_tat = now
  if per_min > 0 then
    local tat = tonumber(stored[2 * i - 1] or '0')
    if tat < now then
      tat = now
    end
    new_tat = tat + period / per_min
    local allow_at = new_tat - period
    if allow_at > now then
      refused = true
      if wait >= 0 then
        wait = math.max(wait, math.ceil(allow_at - now))
      end
    end
  end
  local count = tonumber(stored[2 * i] or '0')
  if per_day > 0 and count >= per_day then
    refused = true
    wait = -1
  end
  new_tats[i] = new_tat
  counts[i] = count
  loads[i] = per_min > 0 and math.min(1000, math.floor((new_tat - now) * 1000 / period)) or 0
end

local out = {refused and 0 or 1, refused and wait or 0}
for i = 1, levels do
  local per_min = tonumber(ARGV[2 * i + 1])
  local count = counts[i] + 1
  if refused then
    count = 0
  elseif not peek then
    if per_min > 0 then
      redis.call('SET', KEYS[2 * i - 1], tostring(new_tats[i]), 'PX',
        math.ceil(new_tats[i] - now))
    end
    count = redis.call('INCR', KEYS[2 * i])
    if count == 1 then  -- created by this vote: its expiry, once
      redis.call('EXPIREAT', KEYS[2 * i], expire_at)
    end
  end
  out[#out + 1] = refused and 1000 or loads[i]
  out[#out + 1] = count
end
return out
