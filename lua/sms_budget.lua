-- sms_budget.lua: take one message from the SMS budget, or refuse; all in one slot.
-- Checked before the provider is asked, so SMS pumping (a bot requesting codes for many
-- numbers) stops at the budget instead of at the invoice.
--
-- KEYS[1] day      counter: messages sent this Asia/Shanghai day ({smsbudget})
-- KEYS[2] hour     counter: messages sent this clock hour
-- KEYS[3] prefix   counter: messages to one number prefix (first 7 digits) this day
-- KEYS[4] outcomes hash: outcome -> count this day (the console's figures)
-- KEYS[5] alarms   hash: "day"/"hour:<HH>" -> 1 once the 80 % alarm was raised
-- ARGV[1] day budget (0 = none)   ARGV[2] hour budget (0 = none)
-- ARGV[3] prefix cap (0 = none)   ARGV[4] alarm percent   ARGV[5] hour id "HH"
-- ARGV[6] seconds the day keys live   ARGV[7] seconds the hour key lives
-- Returns {allowed, refused_by or newly raised alarms ("" when none), day, hour, prefix}.
local day = tonumber(redis.call('GET', KEYS[1]) or '0')
local hour = tonumber(redis.call('GET', KEYS[2]) or '0')
local prefix = tonumber(redis.call('GET', KEYS[3]) or '0')
local day_max, hour_max, prefix_max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local refused = nil
if day_max > 0 and day >= day_max then
  refused = 'day'
elseif hour_max > 0 and hour >= hour_max then
  refused = 'hour'
elseif prefix_max > 0 and prefix >= prefix_max then
  refused = 'prefix'
end
if refused then
  redis.call('HINCRBY', KEYS[4], 'refused_' .. refused, 1)
  redis.call('EXPIRE', KEYS[4], ARGV[6])
  return {0, refused, day, hour, prefix}
end
day = redis.call('INCR', KEYS[1])
hour = redis.call('INCR', KEYS[2])
prefix = redis.call('INCR', KEYS[3])
if day == 1 then redis.call('EXPIRE', KEYS[1], ARGV[6]) end
if hour == 1 then redis.call('EXPIRE', KEYS[2], ARGV[7]) end
if prefix == 1 then redis.call('EXPIRE', KEYS[3], ARGV[6]) end
local alarms = {}
local percent = tonumber(ARGV[4])
if day_max > 0 and day * 100 >= day_max * percent then
  if redis.call('HSETNX', KEYS[5], 'day', 1) == 1 then table.insert(alarms, 'day') end
end
if hour_max > 0 and hour * 100 >= hour_max * percent then
  if redis.call('HSETNX', KEYS[5], 'hour:' .. ARGV[5], 1) == 1 then table.insert(alarms, 'hour') end
end
redis.call('EXPIRE', KEYS[5], ARGV[6])
return {1, table.concat(alarms, ','), day, hour, prefix}
