-- repair_shard.lua: bring one shard group's Redis state back to the ledger's (PostgreSQL +
-- the stream entries not yet committed) after a failover lost writes there, while votes
-- go on: tallies move by differences (a vote counted meanwhile stays counted), and a vote
-- the ledger holds but Redis forgot gets its quota and idempotency record back, once.
-- Every key belongs to the group (one Cluster slot); only the lease's owner repairs.
--
-- KEYS[1] lease   the shard stream's flusher lease (flusher_lease.lua)
-- KEYS[2] tally   hash candidate -> votes of the group
-- KEYS[3 + i] (i = 0 .. votes - 1) the quota hash of the vote's voter on the vote's day,
--         which holds the vote's idempotency record (cast_vote.lua)
-- ARGV[1] owner   the flusher's name
-- ARGV[2] pairs   number of (candidate, difference) pairs that follow
-- ARGV[3 ..]      candidate, difference (signed integer), ...
-- then per vote, in KEYS order: candidate, "1" when its day is today (quota restored) or
--         "0" (yesterday: the record alone), the hash's expiry (unix s), the record's field
--         ("#<vote_id>"), votes per day
-- Returns {votes the tallies moved by (sum of |difference|), votes given back their quota
--          and idempotency record}, or {-1, 0} when another flusher holds the lease.
local owner = redis.call('GET', KEYS[1])
if owner ~= ARGV[1] then
  return {-1, 0}
end
local pairs_n = tonumber(ARGV[2])
local moved = 0
local a = 3
for _ = 1, pairs_n do
  local diff = tonumber(ARGV[a + 1])
  if diff ~= 0 then
    redis.call('HINCRBY', KEYS[2], ARGV[a], diff)
    moved = moved + math.abs(diff)
  end
  a = a + 2
end
local restored = 0
for k = 3, #KEYS do
  local quota, cand, today, record = KEYS[k], ARGV[a], ARGV[a + 1], ARGV[a + 3]
  if redis.call('HEXISTS', quota, record) == 0 then
    local left = 0
    if today == '1' then
      local used = redis.call('HINCRBY', quota, '_n', 1)
      redis.call('HINCRBY', quota, cand, 1)
      left = math.max(tonumber(ARGV[a + 4]) - used, 0)
    end
    local votes = redis.call('HGET', KEYS[2], cand) or '0'
    redis.call('HSET', quota, record, cand .. '|' .. left .. '|' .. votes)
    redis.call('EXPIREAT', quota, ARGV[a + 2])
    restored = restored + 1
  end
  a = a + 5
end
return {moved, restored}
