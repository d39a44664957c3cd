-- Waits: how a waiting node (queueing.lua's park) ends: succeeded with a result (an event's data,
-- its approvals, the end of its sleep), or failed (a timeout, a rejection).

resolve_wait = function(node, result)
  if redis.call('HGET', STATUS, node) ~= NODE_STATUS.WAITING then return false end
  local desc = desc_of(node)
  unpark(node, desc.w)
  started(desc)  -- it blocks its successors no more: one with others running is upcoming now
  succeed(node, result, plan_completion(node), {})
  return true
end

local function fail_wait(node, err)
  if redis.call('HGET', STATUS, node) ~= NODE_STATUS.WAITING then return false end
  unpark(node, desc_of(node).w)
  fail_for_good(node, err, {})
  return true
end

-- A wait or an approval timed out with on_timeout skip: it is skipped (result null, the reason as
-- its error) and its successors go on.
local function skip_wait(node, why)
  local desc = desc_of(node)
  unpark(node, desc.w)
  started(desc)
  redis.call('HSET', ERROR, node, why)
  succeed(node, 'null', plan_completion(node), {'error', why}, NODE_STATUS.SKIPPED)
end

-- A waiting node's deadline has come: a sleep ends, a wait or an approval times out.
local function due(node)
  if redis.call('HGET', STATUS, node) ~= NODE_STATUS.WAITING then return end
  local w = desc_of(node).w
  if w.k == 'sleep' then return resolve_wait(node, cjson.encode({slept_until = NOW})) end
  local why
  if w.k == 'wait' then
    why = 'timed out after ' .. w.t .. ' s waiting for event ' .. (redis.call('HGET', AWAITS, node) or w.e)
  else
    why = 'timed out after ' .. w.t .. ' s waiting for ' .. w.n .. ' approval(s)'
  end
  if w.o then skip_wait(node, why) else fail_wait(node, why) end
end
