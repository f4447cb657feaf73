-- extend: renew the lease of entries this consumer still owns (heartbeat).
-- KEYS[1] stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids
-- XCLAIM with min-idle 0 and JUSTID resets the idle time without counting a delivery.
-- An entry another consumer has claimed meanwhile is not taken back: it is returned as lost.
--#include effects
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local keep, lost = {}, {}
for i = 3, #ARGV do
  if owned(stream, group, ARGV[i], consumer) then
    keep[#keep + 1] = ARGV[i]
  else
    lost[#lost + 1] = ARGV[i]
  end
end
local step = 1000
for j = 1, #keep, step do
  -- unpack must come last in an argument list, or Lua passes only its first value
  local args = {stream, group, consumer, 0}
  for k = j, math.min(j + step - 1, #keep) do args[#args + 1] = keep[k] end
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
return lost
