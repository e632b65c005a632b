-- cast_vote.lua: count one vote atomically, or refuse it without writing anything.
-- Every key belongs to one voter shard group, so the script runs in one Cluster slot.
-- Lua does not roll back: every check comes before the first write.
--
-- KEYS[1] quota      hash of the voter's local day: "_n" = votes cast, <candidate> = votes for
--                    it, "#<vote_id>" = the first answer to that vote (its idempotency
--                    record: no key of its own a vote)
-- KEYS[2] tally      hash candidate -> votes of this shard group
-- KEYS[3] ledger     stream of accepted votes of this shard group (read by the flusher)
-- KEYS[4] yesterday  the voter's quota hash of the day before (a retry across midnight finds
--                    its first answer there: a record lives the rest of its day and the next)
-- KEYS[5] blocked    hash voter id -> unix seconds the block ends (0 = never)
-- KEYS[6] legacy     (only when ARGV[4] is not "0") string: the record as releases before
--                    issue 28 kept it, ``…:idem:<voter>:<vote_id>``; read and written too
--                    while such records may exist (voting.py LEGACY_IDEMPOTENCY)
-- KEYS[6], or KEYS[7] with the legacy key: challenge (optional) string marking a
--                    proof-of-work challenge spent
-- The campaign's day first (the same four strings for every vote of that day):
-- ARGV[1] votes per day       ARGV[2] votes per candidate per day
-- ARGV[3] quota expiry        unix seconds (a day after the local day ends)
-- ARGV[4] legacy record TTL   seconds, or "0": no legacy key
-- then the vote's own:
-- ARGV[5] voter id            ARGV[6] candidate id
-- ARGV[7] "#<vote_id>"        its record's field
-- ARGV[8] the ledger entry, packed by voting.py: vote_id TAB voter TAB candidate TAB channel
--         ("" = direct) TAB client IP TAB local day (YYYY-MM-DD) TAB channel attribution ("1"
--         signed by a partner token's issuer, "0" claimed or none); written as it comes, one
--         field e (voting_service/vote/entry.py reads it; no part holds a tab)
-- ARGV[9] challenge expiry    unix seconds (only with the challenge key)
-- Called as a function (limit_and_cast.lua) it takes three arguments, none on its own: the
-- offsets of its KEYS and ARGV in the call's (the indices above + k and + a; it reads the
-- call's own tables, copying none) and now, unix seconds, the caller's. On its own it reads
-- TIME itself, and only when the voter is on the blocklist.
-- Returns one string, "<status>" or "<status>|<answer>" (one bulk reply: a table costs the
-- server a conversion per element), status as voting_service/redis/scripts.py CastStatus
-- names it:
--   0 ACCEPTED         counted
--   1 REPLAYED         a retry of an accepted vote: answer is the first answer (written
--                      again: see the branch)
--   2 ALREADY_VOTED    already voted for this candidate today
--   3 QUOTA_USED_UP    the daily quota is used up
--   4 BLOCKED          the voter is blocked (no answer)
--   5 CHALLENGE_SPENT  the proof-of-work challenge was already spent (no answer)
-- answer = "<candidate>|<votes left today>|<candidate votes in this shard>".
-- Numbers: x + 0 turns a string into a number with one conversion (tonumber makes two),
-- string.format's %d turns the answer's back (".." would use %.14g, a float conversion
-- several times dearer), and expiries go to the server as the strings they came in.
local k, a, now = ...  -- limit_and_cast.lua's; nil on its own
k, a = k or 0, a or 0
local quota, tally, ledger = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
local legacy_ttl = ARGV[a + 4]
local legacy = legacy_ttl ~= '0' and KEYS[k + 6]
local challenge = KEYS[k + (legacy and 7 or 6)]
local voter, cand, record = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]

local counts = redis.call('HMGET', quota, '_n', cand, record)
-- a retry: written again (a write of this call's own, so the barrier after it on this
-- connection covers the first answer's writes too, whichever connection made them)
local first = counts[3]
if first then
  redis.call('HSET', quota, record, first)
  return '1|' .. first  -- REPLAYED
end
first = redis.call('HGET', KEYS[k + 4], record)
if first then
  redis.call('HSET', KEYS[k + 4], record, first)
  return '1|' .. first  -- REPLAYED
end
if legacy then
  first = redis.call('GET', legacy)
  if first then
    redis.call('EXPIRE', legacy, legacy_ttl)
    return '1|' .. first  -- REPLAYED
  end
end
local block_ends = redis.call('HGET', KEYS[k + 5], voter)
if block_ends then
  now = (now or redis.call('TIME')[1]) + 0
  block_ends = block_ends + 0
  if block_ends == 0 or block_ends > now then
    return '4'  -- BLOCKED
  end
end
if challenge and redis.call('EXISTS', challenge) == 1 then
  return '5'  -- CHALLENGE_SPENT
end
local per_day, per_cand = ARGV[a + 1] + 0, ARGV[a + 2] + 0
local used, for_cand = (counts[1] or 0) + 0, (counts[2] or 0) + 0
if for_cand >= per_cand then
  return '2|' .. cand .. '|' .. math.max(per_day - used, 0) .. '|0'  -- ALREADY_VOTED
end
if used >= per_day then
  return '3|' .. cand .. '|0|0'  -- QUOTA_USED_UP
end

local shard_votes = redis.call('HINCRBY', tally, cand, 1)
local answer = cand .. string.format('|%d|%d', per_day - used - 1, shard_votes)  -- %d, not ..
-- both counts and the record, one call
redis.call('HSET', quota, '_n', used + 1, cand, for_cand + 1, record, answer)
if used == 0 then  -- the day's first vote created the hash: its expiry, once
  redis.call('EXPIREAT', quota, ARGV[a + 3])
end
if challenge then
  redis.call('SET', challenge, '1', 'EXAT', ARGV[a + 9])
end
redis.call('XADD', ledger, '*', 'e', ARGV[a + 8])  -- built by voting.py
if legacy then
  redis.call('SET', legacy, answer, 'EX', legacy_ttl)
end
return '0|' .. answer  -- ACCEPTED
