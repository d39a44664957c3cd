-- Requeue running attempts whose lease expired (their worker died or is cut off),
-- across all runs, at most ARGV[3] of them. Returns the "run|node|attempt" requeued.
local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', server_now(), 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, member in ipairs(expired) do
  local run_id, node, token = string.match(member, '^([^|]+)|([^|]+)|([^|]+)$')
  redis.call('ZREM', LEASES, member)
  if run_id then
    use_run(run_id)
    if fenced(node, token) then
      if redis.call('HGET', RUN, 'status') == 'running' then
        requeue(node, token, 'lease expired: attempt ' .. token .. ' lost its worker')
      else
        -- the run starts nothing new: the lost attempt ends the node
        redis.call('HSET', STATUS, node, 'skipped')
        redis.call('HINCRBY', RUN, 'running', -1)
        record(node, 'skipped')
        if redis.call('HINCRBY', RUN, 'remaining', -1) == 0 then finish() end
      end
      out[#out + 1] = member
    end
  end
end
return out
