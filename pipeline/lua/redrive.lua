-- redrive: move one dead letter back onto its stream as a fresh first attempt.
-- KEYS[1] dead-letter stream, KEYS[2] target stream
-- ARGV[1] dead-letter entry id, ARGV[2] partition base, ARGV[3..] effects block
-- The original entry is the dead letter's fields named 'raw:<field>'; its 'attempt' is dropped.
-- Returns the new entry id, or false when the dead letter no longer exists.
--#include effects
check_effects(ARGV, 3, ARGV[2])
local rows = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #rows == 0 then return false end
local f = rows[1][2]
local fields = {}
for j = 1, #f, 2 do
  local name = f[j]
  if string.sub(name, 1, 4) == 'raw:' and name ~= 'raw:attempt' then
    fields[#fields + 1] = string.sub(name, 5)
    fields[#fields + 1] = f[j + 1]
  end
end
if #fields == 0 then return redis.error_reply('redrive: dead letter has no raw fields') end
local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XDEL', KEYS[1], ARGV[1])
run_effects(ARGV, 3, true)
return id
