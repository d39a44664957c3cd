-- Node ARGV[4] failed for good in attempt ARGV[5] with error ARGV[6]: the run
-- starts nothing new and ends failed once its running nodes are done. Token '*' means
-- whichever attempt is running (the worker's main process after a hard time limit).
local node, token, err = ARGV[4], ARGV[5], ARGV[6]
if token == '*' then token = redis.call('HGET', ATTEMPTS, node) end  -- the attempt now running
if not fenced(node, token) then return 0 end
redis.call('HSET', STATUS, node, 'failed')
redis.call('HSET', ERROR, node, err)
redis.call('HSET', FINISHED, node, NOW)
redis.call('HINCRBY', RUN, 'running', -1)
local remaining = redis.call('HINCRBY', RUN, 'remaining', -1)
record(node, 'failed', {'attempt', token, 'error', string.sub(err, 1, HISTORY_CAP)})
if redis.call('HGET', RUN, 'status') == 'running' then
  redis.call('HSET', RUN, 'status', 'failing', 'error', 'node ' .. node .. ' failed: ' .. err)
  remaining = skip_unstarted()
end
if remaining == 0 then finish() end
return 1
