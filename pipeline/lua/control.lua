-- control: append one control command to the control stream, with the pause state after it.
-- KEYS[1] the control stream
-- ARGV[1] command (drain|stop|pause|resume), ARGV[2] scope ('*' or a group name),
-- ARGV[3] reason, ARGV[4] sender, ARGV[5] MAXLEN (approximate cap)
-- Every entry carries `state`: the JSON of the paused scopes after it ({"*": "pause",
-- "g": "resume", ...}), so the newest entry alone is the current state and trimming old
-- entries never loses it. A command for all groups clears the per-group entries (it is newer
-- than every one of them); a group entry that says what "*" says is dropped.
-- Returns the new entry's id.
local stream, command, scope = KEYS[1], ARGV[1], ARGV[2]
-- the state of the newest entry that has one (an entry added by hand is skipped)
local state = nil
local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 50)
for _, entry in ipairs(newest) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'state' then
      local ok, decoded = pcall(cjson.decode, fields[i + 1])
      if ok and type(decoded) == 'table' then state = decoded end
    end
  end
  if state then break end
end
state = state or {}
if command == 'pause' or command == 'resume' then
  if scope == '*' then
    state = {}
    if command == 'pause' then state['*'] = 'pause' end
  else
    local all = state['*'] or 'resume'
    if command == all then state[scope] = nil else state[scope] = command end
  end
end
local time = redis.call('TIME')
local at = tostring(tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
return redis.call('XADD', stream, 'MAXLEN', '~', ARGV[5], '*',
                  'command', command, 'group', scope, 'reason', ARGV[3], 'by', ARGV[4],
                  'at', at, 'state', cjson.encode(state))
