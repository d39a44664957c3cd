-- Attempt ARGV[4] of node ARGV[3] failed with ARGV[5] and will be retried. Returns 1 if
-- the retry may go ahead, 0 if stale or the run no longer starts nodes (then it is skipped).
-- Idempotent: repeating a call that got through answers 1 again.
local node, token, err = ARGV[3], ARGV[4], ARGV[5]
if redis.call('HGET', STATUS, node) == 'queued' and redis.call('HGET', ATTEMPTS, node) == token
   and redis.call('HGET', ERROR, node) == err then
  return 1
end
if not settle(node, token, 'retried') then return 0 end
redis.call('HSET', ERROR, node, err)
if redis.call('HGET', RUN, 'status') ~= 'running' then
  skip_settled(node)
  return 0
end
redis.call('HSET', STATUS, node, 'queued')
-- Celery holds the retry message until its countdown (ARGV[6] s) is over: check on it only after.
redis.call('ZADD', LEASES, server_now() + tonumber(ARGV[6]) + QUEUED_CHECK_SECONDS, queued_member(node))
record(node, 'retrying', {'attempt', token, 'error', string.sub(err, 1, HISTORY_CAP)})
return 1
