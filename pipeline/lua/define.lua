-- define: inventory defined by events, the catalog and the stock written with them, atomically.
-- KEYS[1] ledger stream, KEYS[2] stock hash, KEYS[3] catalog hash
-- ARGV[1] mode: 'ensure' (define only what is not defined yet: start-up never resets) or
--               'reset' (define every one again: stock back to its initial quantity)
-- ARGV[2] the ledger's live channel ('' for none): each event is PUBLISHed there as the
--   envelope JSON with "data" as an object, unless nobody subscribes (asked once per call)
-- then per resource: resource id, quantity, event id, event data JSON,
--   catalog JSON members ("resource_id":..,"kind":..,"name":..,"price":..,"quantity":..)
-- The catalog entry adds "position" (definition order, kept on a reset) and "defined_entry"
-- (the InventoryDefined entry id: cancellations of older reservations are refused).
-- Returns the ids of the resources defined now.
local ledger, stock, catalog = KEYS[1], KEYS[2], KEYS[3]
local mode, channel = ARGV[1], ARGV[2]
if mode ~= 'ensure' and mode ~= 'reset' then error('define: unknown mode ' .. tostring(mode)) end
local listeners = nil

local defined = {}
for i = 3, #ARGV, 5 do
  local resource, qty, event_id, data, members =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local existing = redis.call('HGET', catalog, resource)
  if mode == 'reset' or not existing then
    local position = redis.call('HLEN', catalog)
    if existing then position = cjson.decode(existing)['position'] or position end
    local id = redis.call('XADD', ledger, '*', 'id', event_id, 'type', 'inventory.defined',
                          'v', '1', 'data', data)
    if listeners == nil then
      listeners = channel ~= '' and redis.call('PUBSUB', 'NUMSUB', channel)[2] or 0
    end
    if listeners > 0 then
      redis.call('PUBLISH', channel, '{"id":' .. cjson.encode(event_id)
                 .. ',"type":"inventory.defined","v":"1","data":' .. data .. '}')
    end
    redis.call('HSET', catalog, resource, '{' .. members .. ',"position":'
               .. string.format('%d', position) .. ',"defined_entry":"' .. id .. '"}')
    redis.call('HSET', stock, resource, qty)
    defined[#defined + 1] = resource
  end
end
return defined
