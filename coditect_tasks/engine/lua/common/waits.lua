-- Waits: how a waiting node (queueing.lua's park) ends: succeeded with a result (an event's data,
-- its approvals, the end of its sleep), or failed (a timeout, a rejection).

resolve_wait = function(node, result)
  if redis.call('HGET', STATUS, node) ~= NODE_STATUS.WAITING then return false end
  unpark(node, desc_of(node).w)
  succeed(node, result, plan_completion(node), {})
  return true
end

local function fail_wait(node, err)
  if redis.call('HGET', STATUS, node) ~= NODE_STATUS.WAITING then return false end
  unpark(node, desc_of(node).w)
  fail_for_good(node, err, {})
  return true
end

-- A waiting node's deadline has come: a sleep ends, a wait or an approval times out.
local function due(node)
  if redis.call('HGET', STATUS, node) ~= NODE_STATUS.WAITING then return end
  local w = desc_of(node).w
  if w.k == 'sleep' then
    resolve_wait(node, cjson.encode({slept_until = NOW}))
  elseif w.k == 'wait' then
    fail_wait(node, 'timed out after ' .. w.t .. ' s waiting for event ' .. (redis.call('HGET', AWAITS, node) or w.e))
  else
    fail_wait(node, 'timed out after ' .. w.t .. ' s waiting for ' .. w.n .. ' approval(s)')
  end
end
