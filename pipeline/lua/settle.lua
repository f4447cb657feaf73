-- settle: the outcomes of a batch of handled entries, in one atomic step.
-- KEYS[1] stream, KEYS[2] delayed zset, KEYS[3] dead-letter stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] partition base (for effect key checks)
-- ARGV[4] JSON (one argument, so a batch costs the client one string, not thousands):
--   l: live effects (progress), applied first and unfenced: {{CMD, arg, ...}, ...}
--   a: ids to ack that have no effects
--   x: ids deleted while pending: acked unfenced
--   o: other outcomes {id, kind, extra, effects}:
--      kind 'a' ack (extra unused), 'r' retry (extra {delay_ms, member}: member is the JSON
--      array of the next attempt's fields), 'd' dead letter (extra {first, count}: the dead
--      letter's fields are ARGV[first .. first+count-1], binary-safe)
--   n: how many entries this consumer may own at most (bounds the fencing query)
-- ARGV[5..] dead-letter fields.
-- Fencing: an outcome applies only while its entry is pending and owned by this consumer;
-- otherwise its lease was lost, another consumer owns it, and nothing is written for it.
-- Returns the ids discarded because the lease was lost.
--#include effects
local stream, delayed, dead = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, base = ARGV[1], ARGV[2], ARGV[3]
local P = cjson.decode(ARGV[4])
local live, plain, gone, other = P.l or {}, P.a or {}, P.x or {}, P.o or {}

check_cmds(live, base)
for _, o in ipairs(other) do
  if o[2] ~= 'a' and o[2] ~= 'r' and o[2] ~= 'd' then error('settle: unknown kind ' .. tostring(o[2])) end
  check_cmds(o[4] or {}, base)
end

run_cmds(live)

-- who owns what: one XPENDING over the batch's id range, filtered to this consumer
local function key(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local lo, hi = nil, nil
local lo_ms, lo_seq, hi_ms, hi_seq
local function widen(id)
  local ms, seq = key(id)
  if ms == nil then return end
  if lo == nil or ms < lo_ms or (ms == lo_ms and seq < lo_seq) then lo, lo_ms, lo_seq = id, ms, seq end
  if hi == nil or ms > hi_ms or (ms == hi_ms and seq > hi_seq) then hi, hi_ms, hi_seq = id, ms, seq end
end
for _, id in ipairs(plain) do widen(id) end
for _, o in ipairs(other) do widen(o[1]) end
local own, complete = {}, true
if lo ~= nil then
  local limit = tonumber(P.n) or (#plain + #other)
  local rows = redis.call('XPENDING', stream, group, lo, hi, limit, consumer)
  for _, row in ipairs(rows) do own[row[1]] = true end
  complete = #rows < limit
end
local function owns(id)
  if own[id] then return true end
  if complete then return false end
  return owned(stream, group, id, consumer)
end

local lost, acks = {}, {}
for _, id in ipairs(gone) do acks[#acks + 1] = id end
for _, id in ipairs(plain) do
  if owns(id) then acks[#acks + 1] = id else lost[#lost + 1] = id end
end
local now = nil
for _, o in ipairs(other) do
  local id, kind, extra = o[1], o[2], o[3]
  if owns(id) then
    acks[#acks + 1] = id
    if kind == 'r' then
      now = now or now_ms()
      redis.call('ZADD', delayed, now + tonumber(extra[1]), extra[2])
    elseif kind == 'd' then
      now = now or now_ms()
      local first = tonumber(extra[1])
      redis.call('XADD', dead, '*', 'dead_at', now, unpack(ARGV, first, first + tonumber(extra[2]) - 1))
    end
    run_cmds(o[4] or {})
  else
    lost[#lost + 1] = id
  end
end

local step = 1000
for j = 1, #acks, step do
  redis.call('XACK', stream, group, unpack(acks, j, math.min(j + step - 1, #acks)))
end
return lost
