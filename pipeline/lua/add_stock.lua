-- add_stock: more of a defined resource, recorded on the ledger in the same atomic step.
-- KEYS[1] ledger stream, KEYS[2] stock hash, KEYS[3] catalog hash
-- ARGV[1] resource id, ARGV[2] quantity (>= 1), ARGV[3] event id, ARGV[4] event data JSON,
-- ARGV[5] (optional) the ledger's live channel: the event is PUBLISHed there as the envelope
--   JSON with "data" as an object, unless nobody subscribes
-- Returns the new available count, or -1 (nothing written) when the resource is unknown.
local ledger, stock, catalog = KEYS[1], KEYS[2], KEYS[3]
local resource, qty = ARGV[1], tonumber(ARGV[2])
if redis.call('HEXISTS', catalog, resource) == 0 then return -1 end
local remaining = redis.call('HINCRBY', stock, resource, qty)
redis.call('XADD', ledger, '*', 'id', ARGV[3], 'type', 'inventory.stock_added', 'v', '1',
           'data', ARGV[4])
local channel = ARGV[5]
if channel and channel ~= '' and redis.call('PUBSUB', 'NUMSUB', channel)[2] > 0 then
  redis.call('PUBLISH', channel, '{"id":' .. cjson.encode(ARGV[3])
             .. ',"type":"inventory.stock_added","v":"1","data":' .. ARGV[4] .. '}')
end
return remaining
