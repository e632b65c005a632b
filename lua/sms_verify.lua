-- sms_verify.lua: check a one-time SMS code, counting wrong tries; a code is used once.
-- The code is stored as "<digest>|<wrong tries>" (a keyed hash, never the code itself),
-- with the 5-minute expiry set when it was sent; KEEPTTL keeps that expiry on each try.
--
-- KEYS[1] code    string "<digest>|<tries>" of one phone ({sms:<phone hmac>})
-- ARGV[1] digest of the code the voter typed
-- ARGV[2] wrong tries that burn the code
-- Returns {status, tries_left}, status as voting_service/redis/scripts.py SmsStatus names it:
--   0 RIGHT            the code is right (and deleted)
--   1 WRONG            a wrong code (tries_left more allowed)
--   2 NO_CODE          no code: never sent, expired, used or burned
local stored = redis.call('GET', KEYS[1])
if not stored then
  return {2, 0}  -- NO_CODE
end
local sep = string.find(stored, '|', 1, true)
local digest = string.sub(stored, 1, sep - 1)
local tries = tonumber(string.sub(stored, sep + 1))
if digest == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {0, 0}  -- RIGHT
end
tries = tries + 1
local left = tonumber(ARGV[2]) - tries
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return {1, 0}  -- WRONG
end
redis.call('SET', KEYS[1], digest .. '|' .. tries, 'KEEPTTL')
return {1, left}  -- WRONG
