-- replay_swap: put a rebuilt projection in place of the live one, atomically.
-- KEYS[1] the log stream, KEYS[2] the projection's checkpoint,
-- then per read model: its live key, its shadow key (the rebuilt one)
-- ARGV[1] the projector's group, ARGV[2] position: the last entry folded ('0-0': none),
-- ARGV[3] entries folded (the group's entries-read, so its lag stays right)
-- Refuses (nothing written) when the log has entries after the position: fold them first.
-- Otherwise: shadows renamed over the live keys, checkpoint set, the group moved to the
-- position (created there if missing), and every entry pending in the group acked: it is in
-- the rebuilt models, so a projector holding it has its result discarded by the settle
-- script's fencing instead of applied twice.
-- Returns {1, entries acked} or {0, the log's last entry id}.
local stream, checkpoint = KEYS[1], KEYS[2]
local group, position, entries_read = ARGV[1], ARGV[2], ARGV[3]

local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
local tip = '0-0'
if #last > 0 then tip = last[1][1] end
if tip ~= position then return {0, tip} end

for i = 3, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i + 1]) == 1 then
    redis.call('RENAME', KEYS[i + 1], KEYS[i])
  else
    redis.call('DEL', KEYS[i])
  end
end
if position == '0-0' then
  redis.call('DEL', checkpoint)
else
  redis.call('SET', checkpoint, position)
end

local created = redis.pcall('XGROUP', 'CREATE', stream, group, position, 'MKSTREAM',
                            'ENTRIESREAD', entries_read)
if type(created) == 'table' and created.err then
  if not string.find(created.err, 'BUSYGROUP') then return redis.error_reply(created.err) end
  redis.call('XGROUP', 'SETID', stream, group, position, 'ENTRIESREAD', entries_read)
end

local acked = 0
while true do
  local pending = redis.call('XPENDING', stream, group, '-', '+', 1000)
  if #pending == 0 then break end
  local ids = {}
  for j = 1, #pending do ids[j] = pending[j][1] end
  acked = acked + redis.call('XACK', stream, group, unpack(ids))
end
return {1, acked}
