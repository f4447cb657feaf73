-- Shared helpers, prepended to every script that declares "--#include effects".
--
-- An effects block in ARGV, starting at index i:  n, then n times: argc, CMD, arg1 .. arg(argc-1)
-- Only the commands below may appear, and every key must begin with the partition's base
-- (its hash tag), so all effects land in the same slot as the script's declared keys.
local ALLOWED = {
  HSET = true, HDEL = true, HINCRBY = true, XADD = true, PUBLISH = true, ZADD = true,
  ZREM = true, SADD = true, SREM = true, INCRBY = true, SET = true, DEL = true,
  EXPIRE = true, PEXPIRE = true,
}

-- First pass: validate a block, return the index after it (raises on a bad block, before any write).
local function check_effects(argv, i, base)
  local n = tonumber(argv[i])
  if n == nil then error('effects: bad count at ' .. i) end
  i = i + 1
  for _ = 1, n do
    local argc = tonumber(argv[i])
    local cmd = argv[i + 1]
    if argc == nil or argc < 1 or not ALLOWED[cmd] then
      error('effects: command not allowed: ' .. tostring(cmd))
    end
    if cmd ~= 'PUBLISH' and string.sub(argv[i + 2] or '', 1, #base) ~= base then
      error('effects: key outside the partition: ' .. tostring(argv[i + 2]))
    end
    i = i + 1 + argc
  end
  return i
end

-- Second pass: run a block (already checked), return the index after it.
local function run_effects(argv, i, run)
  local n = tonumber(argv[i])
  i = i + 1
  for _ = 1, n do
    local argc = tonumber(argv[i])
    if run then redis.call(unpack(argv, i + 1, i + argc)) end
    i = i + 1 + argc
  end
  return i
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Is entry `id` pending in `group` and owned by `consumer`? (the fencing check)
local function owned(stream, group, id, consumer)
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  return #p == 1 and p[1][2] == consumer
end

-- The same, for effects given as a decoded JSON list of commands: {{CMD, arg, ...}, ...}
local function check_cmds(cmds, base)
  for _, cmd in ipairs(cmds) do
    local name = cmd[1]
    if not ALLOWED[name] then error('effects: command not allowed: ' .. tostring(name)) end
    if name ~= 'PUBLISH' and string.sub(cmd[2] or '', 1, #base) ~= base then
      error('effects: key outside the partition: ' .. tostring(cmd[2]))
    end
  end
end

-- A PUBLISH to a channel nobody listens to is skipped: live fan-out is lossy by nature,
-- and a job's lifecycle is on its events stream anyway. Asked once per channel per call.
local listeners = {}
local function run_cmds(cmds)
  for _, cmd in ipairs(cmds) do
    if cmd[1] == 'PUBLISH' then
      local n = listeners[cmd[2]]
      if n == nil then
        n = redis.call('PUBSUB', 'NUMSUB', cmd[2])[2]
        listeners[cmd[2]] = n
      end
      if n > 0 then redis.call('PUBLISH', cmd[2], cmd[3]) end
    else
      redis.call(unpack(cmd))
    end
  end
end
