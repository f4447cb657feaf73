-- rate: add one worker's counts since its last flush to its group's throughput buckets,
-- and sample the stream's entries-added counter (the produced rate), by the server's clock.
-- KEYS[1] the partition's rate hash (pl:{<topic>:<p>}:rate)
-- KEYS[2] the partition's stream
-- ARGV[1] group
-- ARGV[2] entries handled since the last flush (done + retried + dead-lettered)
-- ARGV[3] handler failures since the last flush
-- ARGV[4] bucket width, seconds
-- ARGV[5] buckets kept (older fields are removed, so the hash stays small while written)
-- ARGV[6] time to live of the whole hash, seconds (it goes away when no worker writes)
-- Fields: "<group>:h:<bucket>" and "<group>:f:<bucket>" (counts; written even when 0, so a
-- group whose workers report shows 0 rather than unknown) and "~added:<bucket>" =
-- "<ms>:<entries-added>", the first sample taken in that bucket. A bucket is
-- floor(unix seconds / width). Group names cannot hold ':' or '~'.
-- Returns the bucket written.
local width = tonumber(ARGV[4])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bucket = math.floor(tonumber(t[1]) / width)
local group = ARGV[1]

redis.call('HINCRBY', KEYS[1], group .. ':h:' .. bucket, tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], group .. ':f:' .. bucket, tonumber(ARGV[3]))

-- a stream deleted under a running worker is no reason to fail the flush
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', KEYS[2])
if ok then
  for i = 1, #info, 2 do
    if info[i] == 'entries-added' then
      redis.call('HSETNX', KEYS[1], '~added:' .. bucket, now_ms .. ':' .. info[i + 1])
      break
    end
  end
end

local oldest = bucket - tonumber(ARGV[5])
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  local b = tonumber(string.match(field, ':(%d+)$'))
  if b == nil or b < oldest then
    redis.call('HDEL', KEYS[1], field)
  end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return bucket
