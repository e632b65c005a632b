-- limit_and_cast.lua: ip_limit.lua, then cast_vote.lua, in one call — single node only
-- (in a Cluster the address's keys and the voter's keys live in different slots, and the
-- two scripts are called one after the other). Not a copy of either: redis/scripts.py inserts
-- their sources below as two local functions when it loads this file, so each rule lives
-- in one place. Atomic as a whole: no other command runs between the limit and the vote.
--
-- KEYS[1..n]    ip_limit.lua's KEYS (n = ARGV[1]: 1, or 0 when no limit applies)
-- KEYS[n+1..]   cast_vote.lua's KEYS
-- ARGV[1] n     ARGV[2] now, unix ms (the web tier's clock, which already names the day)
-- ARGV[3..]     cast_vote.lua's ARGV (the campaign's day first; 8, or 9 with a challenge)
-- then          ip_limit.lua's levels, ARGV[3i..3i+2] of its own (none when n = 0), last: it
--               counts them by #ARGV; its ARGV[1] is cast_vote.lua's ARGV[3] (both the
--               day's expiry) and its peek flag is not sent (a vote never peeks)
-- The two read their parts of KEYS and ARGV at offsets (no copies, each a table and its
-- elements for Lua's collector), and neither calls TIME.
-- Returns cast_vote.lua's string, or "6|<ip_limit.lua's reply, joined by |>" when a limit
-- refused the vote: one status more than cast_vote.lua's (redis/scripts.py CastStatus):
--   6 LIMITED          refused by a network limit (cast_vote.lua did not run)
local function ip_limit(...)
--@ip_limit.lua
end

local function cast_vote(...)
--@cast_vote.lua
end

local n, now = ARGV[1] + 0, ARGV[2] + 0
if n > 0 then
  -- cast_vote.lua's KEYS: 5, one more with the legacy record, one more with a challenge;
  -- its ARGV (from ARGV[3]) 8, or 9 with a challenge: the levels follow
  local legacy = ARGV[6] ~= '0'
  local a = #KEYS - n > (legacy and 6 or 5) and 9 or 8
  local limits = ip_limit(0, a, now, ARGV[5])
  if limits[1] == 0 then
    return '6|' .. table.concat(limits, '|')  -- LIMITED
  end
end
return cast_vote(n, 2, math.floor(now / 1000))
