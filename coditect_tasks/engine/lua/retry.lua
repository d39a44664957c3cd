-- Attempt ARGV[4] of node ARGV[3] failed with ARGV[5] and will be retried after ARGV[6] s:
-- the engine queues the node's next message itself when that delay is over (reap.lua), so a
-- retry is one new message with a new seq, never a copy Celery keeps, and the failed attempt's
-- own message is stale from now on. Returns 1 if the retry goes ahead, 0 if stale or the run
-- no longer starts nodes (then the node is skipped). Idempotent: a repeated call answers 1 again.
local node, token, err, delay = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
if redis.call('HGET', STATUS, node) == NODE_STATUS.QUEUED and redis.call('HGET', ATTEMPTS, node) == token
   and redis.call('HGET', ERROR, node) == err then
  return 1
end
if not fenced(node, token) then return 0 end
local r = ready(node)
settle(node, token, 'retried')
redis.call('HSET', ERROR, node, err)
if redis.call('HGET', RUN, 'status') ~= RUN_STATUS.RUNNING then
  skip_settled(node)
  return 0
end
redis.call('HINCRBY', RETRIED, node, 1)
record(node, 'retrying', {'attempt', token, 'error', string.sub(err, 1, HISTORY_CAP)})
if delay > 0 then
  next_seq(node)  -- the failed attempt's message can no longer begin the node
  redis.call('HSET', STATUS, node, NODE_STATUS.QUEUED)
  tally(node, nil)  -- waiting out its delay: not work for any worker yet
  redis.call('ZADD', DELAYED, server_now() + delay, RUN_ID .. '|' .. node)
else
  push(r)
end
return 1
