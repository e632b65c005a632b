-- apply_invalidation.lua: take invalidated votes off one shard group's tally, once.
-- Both keys carry the shard group's hash tag ({c:<campaign>:g<NN>}): one slot. The marker
-- makes a retry (after a crash between PostgreSQL's commit and this step) a no-op.
--
-- KEYS[1] tally   hash candidate -> votes of this shard group
-- KEYS[2] marker  string set once this invalidation was applied to this shard group
-- ARGV[1] marker TTL, seconds
-- ARGV[2], ARGV[3], ... candidate id, votes to take off (pairs)
-- Returns 1 when applied now, 0 when it had been applied before.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], -tonumber(ARGV[i + 1]))
end
redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[1]))
return 1
