-- promote: move delayed entries that are due (by the server's clock) back onto the stream.
-- KEYS[1] delayed zset, KEYS[2] stream
-- ARGV[1] how many at most
-- A member is a JSON array [field1, value1, ...] of the entry to append.
-- Returns {promoted count, ms until the next due member or -1 when none is left}.
--#include effects
local delayed, stream = KEYS[1], KEYS[2]
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local ok, fields = pcall(cjson.decode, member)
  if ok and type(fields) == 'table' and #fields >= 2 then
    redis.call('XADD', stream, '*', unpack(fields))
  else
    redis.call('XADD', stream, '*', 'malformed_delayed_member', member)
  end
  redis.call('ZREM', delayed, member)
end
local nxt = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local wait = -1
if #nxt == 2 then wait = math.max(0, tonumber(nxt[2]) - now) end
return {#due, wait}
