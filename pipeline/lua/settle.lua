-- settle: the outcome of a batch of handled entries, in one atomic step.
-- KEYS[1] stream, KEYS[2] delayed zset, KEYS[3] dead-letter stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] partition base (for effect key checks)
-- then per entry: entry_id, kind, ...
--   kind 'a' (ack):         effects
--   kind 'r' (retry):       delay_ms, member (JSON array of the next attempt's fields), effects
--   kind 'd' (dead letter): nfields, field1, value1, ..., effects
--   kind 'x' (ack, unfenced: the entry was deleted while pending): effects
-- Fencing: 'a', 'r' and 'd' apply only when the entry is still pending and owned by this
-- consumer; otherwise its lease was lost, another consumer owns it, and nothing is written.
-- Returns the ids that were discarded because the lease was lost.
--#include effects
local stream, delayed, dead = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, base = ARGV[1], ARGV[2], ARGV[3]

local i = 4
while i <= #ARGV do
  local kind = ARGV[i + 1]
  if kind == 'a' or kind == 'x' then
    i = check_effects(ARGV, i + 2, base)
  elseif kind == 'r' then
    i = check_effects(ARGV, i + 4, base)
  elseif kind == 'd' then
    i = check_effects(ARGV, i + 3 + tonumber(ARGV[i + 2]), base)
  else
    error('settle: unknown kind ' .. tostring(kind))
  end
end

local lost, acks = {}, {}
local now = nil
i = 4
while i <= #ARGV do
  local id, kind = ARGV[i], ARGV[i + 1]
  local ok = kind == 'x' or owned(stream, group, id, consumer)
  if not ok then lost[#lost + 1] = id end
  if ok then acks[#acks + 1] = id end
  if kind == 'a' or kind == 'x' then
    i = run_effects(ARGV, i + 2, ok)
  elseif kind == 'r' then
    if ok then
      now = now or now_ms()
      redis.call('ZADD', delayed, now + tonumber(ARGV[i + 2]), ARGV[i + 3])
    end
    i = run_effects(ARGV, i + 4, ok)
  else
    local nf = tonumber(ARGV[i + 2])
    if ok then
      now = now or now_ms()
      redis.call('XADD', dead, '*', 'dead_at', now, unpack(ARGV, i + 3, i + 2 + nf))
    end
    i = run_effects(ARGV, i + 3 + nf, ok)
  end
end

local step = 1000
for j = 1, #acks, step do
  redis.call('XACK', stream, group, unpack(acks, j, math.min(j + step - 1, #acks)))
end
return lost
