-- Send node ARGV[3] (attempt ARGV[4]) to fallback agent ARGV[5]: its queue ARGV[6] and
-- message template ARGV[7]. Used while the node's agent has an open circuit breaker.
local node, token = ARGV[3], ARGV[4]
if not fenced(node, token) then return 0 end
local desc = desc_of(node)
local agent = agent_of(desc)  -- the attempt that ends here was this agent's, not the fallback's
desc.q, desc.t = ARGV[6], ARGV[7]
redis.call('HSET', NODE, node, cjson.encode(desc))
redis.call('HSET', P .. 'routed', node, ARGV[5])
release(node, token)
observe_end(node, agent, 'rerouted')
redis.call('HINCRBY', RUN, 'running', -1)
record(node, 'rerouted', {'attempt', token, 'agent', ARGV[5]})
enqueue(node)
return 1
