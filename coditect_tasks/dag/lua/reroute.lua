-- Send node ARGV[3] (attempt ARGV[4]) to fallback agent ARGV[5]: its queue ARGV[6] and
-- message template ARGV[7]. Used while the node's agent has an open circuit breaker.
local node, token = ARGV[3], ARGV[4]
-- the attempt that ends here counts under its own agent, not the fallback
local desc = settle(node, token, 'rerouted')
if not desc then return 0 end
desc.q, desc.t = ARGV[6], ARGV[7]
redis.call('HSET', NODE, node, cjson.encode(desc))
redis.call('HSET', ROUTED, node, ARGV[5])
record(node, 'rerouted', {'attempt', token, 'agent', ARGV[5]})
enqueue(node)
return 1
