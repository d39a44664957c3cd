-- Queueing: node messages filled from their run's templates and pushed onto their agents' queues.

-- A message template split once at its placeholders (@@NODE@@, @@ORDER@@, @@TID@@): filling
-- 10,000 foreach items' messages is then one table.concat each, not three gsubs of the template.
local function compile(tpl)
  local parts, pos = {}, 1
  while true do
    local first, last, name = string.find(tpl, '@@(%u+)@@', pos)
    if not first then break end
    parts[#parts + 1] = string.sub(tpl, pos, first - 1)
    parts[#parts + 1] = {name}
    pos = last + 1
  end
  parts[#parts + 1] = string.sub(tpl, pos)
  return parts
end

local function fill(parts, values)
  local out = {}
  for i, part in ipairs(parts) do out[i] = type(part) == 'table' and values[part[1]] or part end
  return table.concat(out)
end

-- Watch a queued node: after `seconds` the reaper checks that its message is still on its way
-- (reap.lua). The 'l' member is a second look at one that seemed lost. Watches have their own
-- set, so however many nodes wait, they never delay the reaping of expired leases.
local function watch(node, seconds)
  redis.call('ZADD', WATCHES, server_now() + seconds, RUN_ID .. '|' .. node .. '|q')
end

local function unwatch(node)
  redis.call('ZREM', WATCHES, RUN_ID .. '|' .. node .. '|q', RUN_ID .. '|' .. node .. '|l')
end

-- Everything enqueue needs, read before anything is written: a script that cannot enqueue
-- (its run's template is gone) fails before its first write.
local function ready(node)
  local desc = desc_of(node)
  local tpl = redis.call('HGET', TPL, desc.t)
  if not tpl then error('run ' .. RUN_ID .. ' has no message template ' .. desc.t) end
  return {node = node, desc = desc, parts = compile(tpl)}
end

-- Publish a ready node's Celery message straight onto its agent's queue, atomically with its
-- state change: no window in which a ready node is known but not queued. seq numbers the node's
-- messages (only the newest may begin it), order is its place among every message the engine
-- put on its queue (header ORDER_HEADER). A run on a broker Lua cannot reach (RabbitMQ: the
-- run's 'outbox' field) gets its messages written to the outbox in the same script instead,
-- which workers drain to the broker (at least once: a duplicate is dropped by take's checks);
-- the broker redelivers what a dead consumer held, so such a node needs no watch.
local function push(r)
  local seq = redis.call('HINCRBY', SEQ, r.node, 1)
  local order = redis.call('HINCRBY', PUSHED, r.desc.q, 1)
  redis.call('HSET', ORDER, r.node, order)
  set_status(r.node, NODE_STATUS.QUEUED, r.desc)
  local tid = RUN_ID .. ':' .. r.node .. ':' .. seq
  local message = fill(r.parts, {NODE = r.node, ORDER = order, TID = tid})
  if redis.call('HGET', RUN, 'outbox') == '1' then
    redis.call('LPUSH', OUTBOX, r.desc.q .. '\n' .. message)
  else
    redis.call('LPUSH', r.desc.q, message)
    watch(r.node, QUEUED_CHECK_SECONDS)
  end
  record(r.node, NODE_STATUS.QUEUED)
end

local function enqueue(node)
  push(ready(node))
end

-- Queue up to ROOT_SLICE more of the run's roots (a run with more roots than that is queued in
-- slices, each its own script call, by its submitter or, if that stopped, by the reaper). In a run
-- that starts nothing new they are dropped: cancel and failure have ended them. The reaper takes
-- the run's next slice `next_in` seconds from now unless another call comes first. Returns the
-- roots still to queue.
local function push_roots(next_in)
  if redis.call('HGET', RUN, 'status') == RUN_STATUS.RUNNING then
    for _, root in ipairs(redis.call('LPOP', UNPUSHED, ROOT_SLICE) or {}) do
      if redis.call('HGET', STATUS, root) == NODE_STATUS.PENDING then enqueue(root) end
    end
  else
    redis.call('DEL', UNPUSHED)
  end
  local left = redis.call('LLEN', UNPUSHED)
  if left == 0 then
    redis.call('ZREM', SUBMITTING, RUN_ID)
  else
    redis.call('ZADD', SUBMITTING, server_now() + next_in, RUN_ID)
  end
  return left
end
