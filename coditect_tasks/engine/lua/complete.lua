-- Node ARGV[3] succeeded in attempt ARGV[4] with JSON result ARGV[5] (its span's W3C
-- traceparent in ARGV[6], for its successors' spans to hang under). Records it, counts down
-- its successors and enqueues those now ready. A foreach item records its result; the last
-- one completes its node with every item's result, in order. With ARGV[7..14] (queue, task name,
-- hard and soft limits, worker, breaker prefix, running message id, seconds) the process then
-- takes the next message of its queue (common/take_next.lua). It queues READY_SLICE successors at
-- most: a wider fan-out's rest waits for the process to queue it in slices (roots.lua), and the
-- process takes no next message then. Returns as
-- JSON {ok = 1, ready (how many successors it queued)[, left (how many wait)][, next = {run, node,
-- task}, taken = take's reply]}, or {ok = 0} if stale.
local node, token, result, span = ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local function completed()
  if not fenced(node, token) then return {ok = 0} end
  local parent = parent_of(node)
  if not parent then
    local plan = plan_completion(node, READY_SLICE)
    complete_node(node, token, result, span, plan)
    return {ok = 1, ready = #plan.ready}
  end
  -- read everything first: the node's whole result if this is its last item, and what it makes ready
  local n = tonumber(redis.call('HGET', FANOUT, parent))
  local done = tonumber(redis.call('HGET', FANOUT, parent .. '|done')) + 1
  local bytes = tonumber(redis.call('HGET', FANOUT, parent .. '|bytes')) + #result + 1
  local ptoken = redis.call('HGET', ATTEMPTS, parent)
  local live = fenced(parent, ptoken)
  if live and bytes > MAX_RESULT_BYTES then
    -- the items' results would not fit in the node's: fail it now, before they pile up in Redis
    settle(node, token, nil)
    close_item(node, NODE_STATUS.SUCCEEDED)
    fail_node(parent, ptoken, 'result is over ' .. bytes - 1 .. ' bytes with item ' .. string.match(node, '#(%d+)$')
              .. ', over the limit of ' .. MAX_RESULT_BYTES)
    return {ok = 1, ready = 0}
  end
  local whole, plan
  if done == n and live then
    local index = tonumber(string.match(node, '#(%d+)$'))
    local parts = {}
    for k = 0, n - 1 do
      parts[k + 1] = (k == index) and result or redis.call('HGET', RESULT, parent .. '#' .. k)
    end
    whole = '[' .. table.concat(parts, ',') .. ']'
    if #whole <= MAX_RESULT_BYTES then plan = plan_completion(parent, READY_SLICE) end
  end
  settle(node, token, nil)
  close_item(node, NODE_STATUS.SUCCEEDED)
  redis.call('HSET', RESULT, node, result)
  redis.call('HSET', FANOUT, parent .. '|done', done, parent .. '|bytes', bytes)
  if not whole then
    close_parent(parent)
    return {ok = 1, ready = 0}
  end
  -- the node's result holds them now: the items' own state can go, 1,000 fields per command
  local items = {}
  for k = 0, n - 1 do items[k + 1] = parent .. '#' .. k end
  for _, hash in ipairs({STATUS, ATTEMPTS, RESULT, ERROR, WORKER, STARTED, TASK, T0, RETRIED, ITEMS}) do
    for first = 1, n, 1000 do redis.call('HDEL', hash, unpack(items, first, math.min(first + 999, n))) end
  end
  forget_marks(items)
  redis.call('HDEL', ITEMS, parent .. '|record')
  if plan then
    complete_node(parent, ptoken, whole, span, plan)
    return {ok = 1, ready = #plan.ready}
  end
  fail_node(parent, ptoken, 'result is ' .. #whole .. ' bytes, over the limit of ' .. MAX_RESULT_BYTES)
  return {ok = 1, ready = 0}
end

local reply = completed()
if left_over then reply.left = redis.call('LLEN', UNPUSHED) end
-- a process that left successors to queue queues them before it takes another node (whose lease
-- would run out meanwhile): it takes none here
if reply.ok == 1 and (ARGV[7] or '') ~= '' and not reply.left then
  local next_ids, taken = take_next(ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13],
                                 tonumber(ARGV[14]))
  if next_ids then reply.next, reply.taken = next_ids, taken end
end
return cjson.encode(reply)
