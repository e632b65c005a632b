-- replay_vote.lua: the first answer to an accepted vote, if there was one; a retry of a
-- vote that did land gets it even when the vote would now be refused (voting.replay).
-- The answer is written again: a write of this call's own, so the barrier after it on this
-- connection covers the first answer's writes too, whichever connection (worker) made them
-- (a plain read would be acknowledged while they may still be on the master alone).
--
-- KEYS[1] the voter's quota hash of today      KEYS[2] of yesterday (cast_vote.lua's KEYS[4])
-- KEYS[3] (optional) the legacy record key (cast_vote.lua's KEYS[6])
-- ARGV[1] "#<vote_id>", the record's field     ARGV[2] the legacy record's TTL, seconds
-- Returns the first answer, "<candidate>|<votes left today>|<candidate votes in the shard>",
-- or nil.
for i = 1, 2 do
  local first = redis.call('HGET', KEYS[i], ARGV[1])
  if first then
    redis.call('HSET', KEYS[i], ARGV[1], first)
    return first
  end
end
if KEYS[3] then
  return redis.call('GETEX', KEYS[3], 'EX', ARGV[2])
end
return false
