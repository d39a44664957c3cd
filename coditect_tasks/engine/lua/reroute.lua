-- Send node ARGV[3] (attempt ARGV[4]) to fallback agent ARGV[5]: its queue ARGV[6] and
-- message template ARGV[7]. Used while the node's agent has an open circuit breaker. Returns 1,
-- or 0 if the attempt is stale, the template is missing, or the run starts nothing new (the node
-- is then skipped).
local node, token = ARGV[3], ARGV[4]
if not fenced(node, token) or not (template_of(ARGV[7]) or redis.call('HEXISTS', TPL, ARGV[7]) == 1) then
  return 0
end
-- the attempt that ends here counts under its own agent, not the fallback
local desc = settle(node, token, 'rerouted')
if redis.call('HGET', RUN, 'status') ~= RUN_STATUS.RUNNING then
  skip_settled(node)
  return 0
end
desc.q, desc.t = ARGV[6], ARGV[7]
redis.call('HSET', NODE, node, cjson.encode(desc))
redis.call('HSET', ROUTED, node, ARGV[5])
record(node, 'rerouted', {'attempt', token, 'agent', ARGV[5]})
enqueue(node)
return 1
