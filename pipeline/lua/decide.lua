-- decide: the outcome of one reservation, recorded on the ledger in the same atomic step.
-- KEYS[1] ledger stream, KEYS[2] stock hash (resource -> available), KEYS[3] catalog hash
--   (resource -> JSON with "kind"), KEYS[4] the reservation's decision key
-- ARGV[1] resource id, ARGV[2] quantity (1..1000), ARGV[3] outcome event id,
-- ARGV[4] the outcome's common JSON members, already encoded by the caller:
--   "reservation_id":..,"resource_id":..,"quantity":..,"customer":..
-- ARGV[5] (optional) the ledger's live channel: the outcome is PUBLISHed there as the envelope
--   JSON with "data" as an object, unless nobody subscribes (one PUBSUB NUMSUB per call)
-- Idempotent on the reservation id: a decided one returns its stored decision unchanged.
-- A count never goes below zero: stock is taken only when available >= quantity.
-- Returns {duplicate (0|1), decision JSON}.
local ledger, stock, catalog, decision = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local resource, qty, event_id, common = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local channel = ARGV[5]

local done = redis.call('GET', decision)
if done then return {1, done} end

local available = redis.call('HGET', stock, resource)
local status, reason, remaining, data
if not available then
  status, reason = 'rejected', 'unknown_resource'
else
  available = tonumber(available)
  if available == nil then error('decide: stock of ' .. resource .. ' is not a number') end
  if available >= qty then
    remaining = redis.call('HINCRBY', stock, resource, -qty)
    status = 'confirmed'
  else
    status, reason = 'rejected', 'not_enough'
    if available == 0 then
      local entry = redis.call('HGET', catalog, resource)
      if entry and cjson.decode(entry)['kind'] == 'seats' then reason = 'blocked' end
    end
  end
end

local event_type, event_data
if status == 'confirmed' then
  event_type, event_data = 'reservation.confirmed', '{' .. common .. ',"remaining":' .. remaining .. '}'
else
  event_type, event_data = 'reservation.rejected', '{' .. common .. ',"reason":"' .. reason .. '"}'
end
local id = redis.call('XADD', ledger, '*', 'id', event_id, 'type', event_type, 'v', '1',
                      'data', event_data)
if channel and channel ~= '' and redis.call('PUBSUB', 'NUMSUB', channel)[2] > 0 then
  redis.call('PUBLISH', channel, '{"id":' .. cjson.encode(event_id) .. ',"type":"' .. event_type
             .. '","v":"1","data":' .. event_data .. '}')
end
local out = '{' .. common .. ',"status":"' .. status .. '","reason":'
  .. (reason and ('"' .. reason .. '"') or 'null') .. ',"remaining":'
  .. (remaining and tostring(remaining) or (available and tostring(available)) or 'null')
  .. ',"entry_id":"' .. id .. '"}'
redis.call('SET', decision, out)
return {0, out}
