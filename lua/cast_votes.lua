-- cast_votes.lua: several limit_and_cast.lua calls in one — single node only. The
-- pipeline (redis/pipeline.py) joins the votes of one write into it: what a script call
-- costs besides its commands (the EVALSHA itself, Lua's call and its KEYS and ARGV tables,
-- the MULTI and EXEC around its writes in the AOF and to replicas, the reply) is paid once
-- a write instead of once a vote. Each vote is as limit_and_cast.lua alone would count or
-- refuse it; the whole call is atomic.
--
-- KEYS          each vote's limit_and_cast.lua KEYS, one vote after the other
-- ARGV[1] m     the number of votes
-- ARGV[2i], ARGV[2i + 1] (i = 1 .. m)  vote i's number of KEYS and of ARGV
-- then          each vote's limit_and_cast.lua ARGV, one vote after the other
-- Returns {vote 1's reply, ..., vote m's}, each limit_and_cast.lua's string.
local function limit_and_cast(...)
--@limit_and_cast.lua
end

local m = ARGV[1] + 0
local out, k, a = {}, 0, 2 * m + 1
for i = 1, m do
  local nk, na = ARGV[2 * i] + 0, ARGV[2 * i + 1] + 0
  out[i] = limit_and_cast(k, a, nk, na)
  k, a = k + nk, a + na
end
return out
