-- read_shard_state.lua: one shard group's tally and ledger stream, read at one instant, so
-- that a vote cast meanwhile is either in both or in neither (the tally drift check).
--
-- KEYS[1] tally hash of the shard group
-- KEYS[2] ledger stream of the same group
-- ARGV[1] most stream entries to return; a longer stream returns none (too costly to check)
-- Returns {tally as a flat field/value list, stream length, last generated stream id or "",
--          entries (id, fields) or an empty list, Redis TIME seconds, microseconds}.
local limit = tonumber(ARGV[1])
local tally = redis.call('HGETALL', KEYS[1])
local length = 0
local last = ''
if redis.call('EXISTS', KEYS[2]) == 1 then
  length = redis.call('XLEN', KEYS[2])
  local info = redis.call('XINFO', 'STREAM', KEYS[2])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      last = info[i + 1]
    end
  end
end
local entries = {}
if length > 0 and length <= limit then
  entries = redis.call('XRANGE', KEYS[2], '-', '+')
end
local now = redis.call('TIME')
return {tally, length, last, entries, now[1], now[2]}
