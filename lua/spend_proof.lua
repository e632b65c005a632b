-- spend_proof.lua: mark a proof-of-work challenge used, once. A vote's proof is spent inside
-- cast_vote.lua; this spends one that stands alone (minting an anonymous voter token).
-- A script, not a bare SET NX, so that it rides the same pipelines as the other calls.
--
-- KEYS[1] marker   string "1" while the challenge could still be presented
-- ARGV[1] unix seconds when the marker may go (the challenge's expiry plus a margin)
-- Returns 1 when this call spent it, 0 when it had been spent before.
if redis.call('SET', KEYS[1], '1', 'NX', 'EXAT', tonumber(ARGV[1])) then
  return 1
end
return 0
