-- ack_entries.lua: acknowledge ledger entries committed to PostgreSQL and delete them,
-- in one step, so that the stream holds exactly the votes not yet in PostgreSQL.
--
-- KEYS[1] ledger stream of one shard group
-- ARGV[1] consumer group name
-- ARGV[2..] stream entry ids
-- Returns the number of entries deleted.
local ids = {}
for i = 2, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
if #ids == 0 then
  return 0
end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
return redis.call('XDEL', KEYS[1], unpack(ids))
