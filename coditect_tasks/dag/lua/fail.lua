-- Node ARGV[3] failed for good in attempt ARGV[4] with error ARGV[5]: the run
-- starts nothing new and ends failed once its running nodes are done. Token 'task:<id>'
-- means the attempt begun from the message with that task id (the worker's main process
-- after a hard time limit knows the message, not the token): a stale attempt's message
-- names no running attempt, so it fails nothing.
local node, token, err = ARGV[3], ARGV[4], ARGV[5]
if string.sub(token, 1, 5) == 'task:' then
  if redis.call('HGET', TASK, node) ~= string.sub(token, 6) then return 0 end
  token = redis.call('HGET', ATTEMPTS, node)
end
if not settle(node, token, 'failed') then return 0 end
redis.call('HSET', STATUS, node, 'failed')
redis.call('HSET', ERROR, node, err)
redis.call('HSET', FINISHED, node, NOW)
local remaining = redis.call('HINCRBY', RUN, 'remaining', -1)
record(node, 'failed', {'attempt', token, 'error', string.sub(err, 1, HISTORY_CAP)})
if redis.call('HGET', RUN, 'status') == 'running' then
  redis.call('HSET', RUN, 'status', 'failing', 'error', 'node ' .. node .. ' failed: ' .. err)
  remaining = skip_unstarted()
end
if remaining == 0 then finish() end
return 1
