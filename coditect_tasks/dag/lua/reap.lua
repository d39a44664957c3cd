-- Requeue running attempts whose lease expired (their worker died or is cut off),
-- across all runs, at most ARGV[3] of them. Also check nodes queued for a long time:
-- a message popped by a worker that died before it even noted the message (kombu's
-- BRPOP is not reliable) is neither in its queue nor held by a live worker; queue it
-- again. Returns the "run|node|attempt" (or "run|node|q") handled, or {'outage'}: when no
-- reaper has reached Redis for REAP_GAP_SECONDS (Redis stalled or restarted, or every worker
-- was cut off), no lease holder could renew either, so every lease due within one lease
-- length gets that length from now, and nothing is judged until then.
local function still_waiting(node)
  local desc = desc_of(node)
  local seq = redis.call('HGET', SEQ, node) or '1'
  -- oldest messages sit at the tail, so search from there
  if redis.call('LPOS', desc.q, message(node, desc, seq), 'RANK', -1) then return true end
  local member = RUN_ID .. '|' .. node
  for _, host in ipairs(redis.call('ZRANGE', RESERVERS, 0, -1)) do
    if redis.call('SISMEMBER', RESERVED_PREFIX .. host, member) == 1
       and redis.call('EXISTS', WORKER_PREFIX .. host) == 1 then
      return true
    end
  end
  return false
end

local now = server_now()
local last = tonumber(redis.call('GET', REAPED_AT) or '0')
redis.call('SET', REAPED_AT, tostring(now))
if now - last > REAP_GAP_SECONDS then
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now + LEASE_SECONDS)) do
    redis.call('ZADD', LEASES, now + LEASE_SECONDS, member)
  end
  return {'outage'}
end

local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, member in ipairs(expired) do
  local run_id, node, token = string.match(member, '^([^|]+)|([^|]+)|([^|]+)$')
  redis.call('ZREM', LEASES, member)
  if run_id and token == 'q' then
    use_run(run_id)
    if queued_in_live_run(node) then
      if still_waiting(node) then
        redis.call('ZADD', LEASES, server_now() + QUEUED_CHECK_SECONDS, member)
      else
        requeue_lost(node, 'message lost in transit; queued again', {'error', 'message lost in transit'})
        out[#out + 1] = member
      end
    end
  elseif run_id then
    use_run(run_id)
    if fenced(node, token) then
      if redis.call('HGET', RUN, 'status') == 'running' then
        requeue(node, token, 'lease expired: attempt ' .. token .. ' lost its worker')
      else
        -- the run starts nothing new: the lost attempt ends the node
        if settle(node, token, nil) then skip_settled(node) end
      end
      out[#out + 1] = member
    end
  end
end
return out
