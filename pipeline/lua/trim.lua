-- trim: drop only entries that every group has acknowledged.
-- KEYS[1] stream
-- ARGV[1] keep at least this many newest entries
-- The cut is the oldest id any group still needs: its oldest pending entry, or the entry
-- after its last delivered one. With no group at all, nothing is trimmed.
-- Returns the number of entries removed.
local stream = KEYS[1]
local groups = redis.call('XINFO', 'GROUPS', stream)
if #groups == 0 then return 0 end
local function lt(a, b)
  local ams, aseq = string.match(a, '(%d+)-(%d+)')
  local bms, bseq = string.match(b, '(%d+)-(%d+)')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
local cut = nil
for _, g in ipairs(groups) do
  local info = {}
  for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
  local need
  local summary = redis.call('XPENDING', stream, info['name'])
  if tonumber(summary[1]) > 0 then
    need = summary[2]
  else
    -- everything up to last-delivered is acked; keep that one entry as the marker
    need = info['last-delivered-id']
  end
  if cut == nil or lt(need, cut) then cut = need end
end
local keep = tonumber(ARGV[1])
if keep > 0 then
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', keep)
  if #newest > 0 then
    local oldest_kept = newest[#newest][1]
    if lt(oldest_kept, cut) then cut = oldest_kept end
  end
end
return redis.call('XTRIM', stream, 'MINID', cut)
