-- produce: append events idempotently on their event id, with their effects, atomically.
-- KEYS[1] stream
-- ARGV[1] dedup key prefix (ends with ':dedup:'), ARGV[2] dedup ttl seconds,
-- ARGV[3] partition base (for effect key checks), ARGV[4] approximate MAXLEN or 0
-- then per event: event_id, nfields, field1, value1, ..., effects block
-- Returns {entry_id_1, is_new_1, entry_id_2, is_new_2, ...}
--#include effects
local stream = KEYS[1]
local prefix, ttl, base, maxlen = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

local i = 5
while i <= #ARGV do
  local nf = tonumber(ARGV[i + 1])
  if nf == nil or nf < 2 or nf % 2 ~= 0 then error('produce: bad field count') end
  i = check_effects(ARGV, i + 2 + nf, base)
end

local out = {}
i = 5
while i <= #ARGV do
  local event_id, nf = ARGV[i], tonumber(ARGV[i + 1])
  local dk = prefix .. event_id
  local existing = redis.call('GET', dk)
  local fresh = existing == false
  if fresh then
    local id
    if maxlen > 0 then
      id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(ARGV, i + 2, i + 1 + nf))
    else
      id = redis.call('XADD', stream, '*', unpack(ARGV, i + 2, i + 1 + nf))
    end
    redis.call('SET', dk, id, 'EX', ttl)
    out[#out + 1] = id
    out[#out + 1] = 1
  else
    out[#out + 1] = existing
    out[#out + 1] = 0
  end
  i = run_effects(ARGV, i + 2 + nf, fresh)
end
return out
