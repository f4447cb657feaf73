-- cancel: undo a confirmed reservation, returning its stock, recorded on the ledger atomically.
-- KEYS[1] ledger stream, KEYS[2] stock hash, KEYS[3] catalog hash, KEYS[4] decision key
-- ARGV[1] outcome event id, ARGV[2] (optional) the ledger's live channel: the event is
--   PUBLISHed there as the envelope JSON with "data" as an object, unless nobody subscribes
-- Idempotent: a cancelled reservation returns its stored cancellation.
-- Refused (nothing written) when the reservation is unknown, was not confirmed, or was
-- confirmed before its resource was last (re)defined: that stock was already reset.
-- Returns {code, decision JSON or ''}: 0 cancelled now, 1 already cancelled,
-- -1 unknown, -2 not confirmed, -3 older than the resource's definition.
local ledger, stock, catalog, decision = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local event_id, channel = ARGV[1], ARGV[2]

local function id_lt(a, b)
  local ams, aseq = string.match(a, '(%d+)-(%d+)')
  local bms, bseq = string.match(b, '(%d+)-(%d+)')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end

local stored = redis.call('GET', decision)
if not stored then return {-1, ''} end
local d = cjson.decode(stored)
if d['status'] == 'cancelled' then return {1, stored} end
if d['status'] ~= 'confirmed' then return {-2, stored} end
local entry = redis.call('HGET', catalog, d['resource_id'])
if entry then
  local defined = cjson.decode(entry)['defined_entry']
  if defined and id_lt(d['entry_id'], defined) then return {-3, stored} end
end

local common = '"reservation_id":' .. cjson.encode(d['reservation_id'])
  .. ',"resource_id":' .. cjson.encode(d['resource_id'])
  .. ',"quantity":' .. string.format('%d', d['quantity'])
  .. ',"customer":' .. cjson.encode(d['customer'])
local remaining = redis.call('HINCRBY', stock, d['resource_id'], d['quantity'])
local id = redis.call('XADD', ledger, '*', 'id', event_id, 'type', 'reservation.cancelled',
                      'v', '1', 'data', '{' .. common .. '}')
if channel and channel ~= '' and redis.call('PUBSUB', 'NUMSUB', channel)[2] > 0 then
  redis.call('PUBLISH', channel, '{"id":' .. cjson.encode(event_id)
             .. ',"type":"reservation.cancelled","v":"1","data":{' .. common .. '}}')
end
local out = '{' .. common .. ',"status":"cancelled","reason":null,"remaining":' .. remaining
  .. ',"entry_id":"' .. id .. '","confirmed_entry":"' .. d['entry_id'] .. '"}'
redis.call('SET', decision, out)
return {0, out}
