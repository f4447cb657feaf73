-- produce: append events idempotently on their event id, with their effects, atomically.
-- KEYS[1] stream
-- ARGV[1] dedup key prefix (ends with ':dedup:'), ARGV[2] dedup ttl seconds,
-- ARGV[3] partition base (for effect key checks), ARGV[4] approximate MAXLEN or 0,
-- ARGV[5] JSON list of events: {{event_id, {field, value, ...}, {{CMD, arg, ...}, ...}}, ...}
-- An event whose id was produced before (within the ttl) appends nothing and runs no effects.
-- Returns {entry_id_1, is_new_1, entry_id_2, is_new_2, ...}
--#include effects
local stream = KEYS[1]
local prefix, ttl, base, maxlen = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local events = cjson.decode(ARGV[5])

for _, e in ipairs(events) do
  local fields = e[2]
  if type(e[1]) ~= 'string' or #fields < 2 or #fields % 2 ~= 0 then
    error('produce: bad event')
  end
  check_cmds(e[3] or {}, base)
end

local out = {}
for _, e in ipairs(events) do
  local dk = prefix .. e[1]
  local existing = redis.call('GET', dk)
  if existing == false then
    local id
    if maxlen > 0 then
      id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(e[2]))
    else
      id = redis.call('XADD', stream, '*', unpack(e[2]))
    end
    redis.call('SET', dk, id, 'EX', ttl)
    run_cmds(e[3] or {})
    out[#out + 1] = id
    out[#out + 1] = 1
  else
    out[#out + 1] = existing
    out[#out + 1] = 0
  end
end
return out
