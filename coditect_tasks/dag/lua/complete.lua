-- Node ARGV[3] succeeded in attempt ARGV[4] with JSON result ARGV[5] (its span's W3C
-- traceparent in ARGV[6], for its successors' spans to hang under). Records it,
-- counts down its successors and enqueues those now ready. Returns {1, ready} or {0} if stale.
local node, token, result = ARGV[3], ARGV[4], ARGV[5]
if not fenced(node, token) then return {0} end
-- read everything first: the successors this completion makes ready
local succs, now_ready = {}, {}
if redis.call('HGET', RUN, 'status') == 'running' then
  succs = desc_of(node).s
  for _, succ in ipairs(succs) do
    if tonumber(redis.call('HGET', PENDING, succ)) == 1 then now_ready[#now_ready + 1] = ready(succ) end
  end
end
settle(node, token, 'succeeded')
if ARGV[6] and ARGV[6] ~= '' then redis.call('HSET', TRACE, node, ARGV[6]) end
redis.call('HSET', STATUS, node, 'succeeded')
redis.call('HSET', RESULT, node, result)
redis.call('HSET', FINISHED, node, NOW)
local remaining = redis.call('HINCRBY', RUN, 'remaining', -1)
record(node, 'succeeded', {'attempt', token, 'result', string.sub(result, 1, HISTORY_CAP)})
for _, succ in ipairs(succs) do redis.call('HINCRBY', PENDING, succ, -1) end
for _, r in ipairs(now_ready) do push(r) end
if remaining == 0 then finish() end
return {1, #now_ready}
