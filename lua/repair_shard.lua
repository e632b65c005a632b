-- repair_shard.lua: bring one shard group's Redis state back to the ledger's (PostgreSQL +
-- the stream entries not yet committed) after a failover lost writes there, while votes
-- go on: tallies move by differences (a vote counted meanwhile stays counted), and a vote
-- the ledger holds but Redis forgot gets its quota and idempotency record back, once.
-- Every key belongs to the group (one Cluster slot); only the lease's owner repairs.
--
-- KEYS[1] lease   the shard stream's flusher lease (flusher_lease.lua)
-- KEYS[2] tally   hash candidate -> votes of the group
-- KEYS[3 + 2i], KEYS[4 + 2i] (i = 0 .. votes - 1) the quota hash of the vote's voter on the
--         vote's day, and the vote's idempotency record
-- ARGV[1] owner   the flusher's name
-- ARGV[2] pairs   number of (candidate, difference) pairs that follow
-- ARGV[3 ..]      candidate, difference (signed integer), ...
-- then per vote, in KEYS order: candidate, "1" when its day is today (quota restored) or
--         "0", quota expiry (unix s), idempotency record expiry (unix s), votes per day
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
local k = 3
while k < #KEYS do
  local quota, idem = KEYS[k], KEYS[k + 1]
  local cand, today = ARGV[a], ARGV[a + 1]
  local quota_exp, idem_exp, per_day = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]),
    tonumber(ARGV[a + 4])
  if redis.call('EXISTS', idem) == 0 then
    local left = 0
    if today == '1' then
      local used = redis.call('HINCRBY', quota, '_n', 1)
      redis.call('HINCRBY', quota, cand, 1)
      redis.call('EXPIREAT', quota, quota_exp)
      left = math.max(per_day - used, 0)
    end
    local votes = redis.call('HGET', KEYS[2], cand) or '0'
    redis.call('SET', idem, cand .. '|' .. left .. '|' .. votes, 'EXAT', idem_exp)
    restored = restored + 1
  end
  a = a + 5
  k = k + 2
end
return {moved, restored}
