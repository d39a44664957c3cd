-- Node ARGV[3] succeeded in attempt ARGV[4] with JSON result ARGV[5] (its span's W3C
-- traceparent in ARGV[6], for its successors' spans to hang under). Records it,
-- counts down its successors and enqueues those now ready. Returns {1, ready} or {0} if stale.
local node, token, result = ARGV[3], ARGV[4], ARGV[5]
local desc = settle(node, token, 'succeeded')
if not desc then return {0} end
if ARGV[6] and ARGV[6] ~= '' then redis.call('HSET', TRACE, node, ARGV[6]) end
redis.call('HSET', STATUS, node, 'succeeded')
redis.call('HSET', RESULT, node, result)
redis.call('HSET', FINISHED, node, NOW)
local remaining = redis.call('HINCRBY', RUN, 'remaining', -1)
record(node, 'succeeded', {'attempt', token, 'result', string.sub(result, 1, HISTORY_CAP)})
local ready = 0
if redis.call('HGET', RUN, 'status') == 'running' then
  for _, succ in ipairs(desc.s) do
    if redis.call('HINCRBY', PENDING, succ, -1) == 0 then
      enqueue(succ)
      ready = ready + 1
    end
  end
end
if remaining == 0 then finish() end
return {1, ready}
