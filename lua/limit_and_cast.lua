-- limit_and_cast.lua: ip_limit.lua, then cast_vote.lua, in one call — single node only
-- (in a Cluster the address's keys and the voter's keys live in different slots, and the
-- two scripts are called one after the other). Not a copy of either: redis/scripts.py inserts
-- their sources below as two local functions when it loads this file, so each rule lives
-- in one place. Atomic as a whole: no other command runs between the limit and the vote.
--
-- KEYS[1]      ip_limit.lua's key, when ARGV[2] is not ""
-- KEYS[..]     then cast_vote.lua's KEYS
-- ARGV[1] now  unix ms (the web tier's clock, which already names the day)
-- ARGV[2]      ip_limit.lua's levels (its ARGV[3], one string), or "" when no limit applies
-- ARGV[3..]    cast_vote.lua's ARGV (the campaign's day first; 8, or 9 with a challenge);
--              its ARGV[3], the quota's expiry, is ip_limit.lua's ARGV[1] too (both the
--              day's expiry), and a vote never peeks
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

local now, levels = ARGV[1] + 0, ARGV[2]
local n = 0
if levels ~= '' then
  n = 1
  local limits = ip_limit(0, levels, now, ARGV[5])
  if limits ~= true then
    return '6|' .. table.concat(limits, '|')  -- LIMITED
  end
end
return cast_vote(n, 2, math.floor(now / 1000))
