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

-- Templates compiled in this call, by their text: a call that queues many nodes compiles each once.
local compiled_now = {}
local function compiled(tpl)
  if not compiled_now[tpl] then compiled_now[tpl] = compile(tpl) end
  return compiled_now[tpl]
end

local function fill(parts, values)
  local out = {}
  for i, part in ipairs(parts) do out[i] = type(part) == 'table' and values[part[1]] or part end
  return table.concat(out)
end

-- Watch a message pushed onto queue q: the reaper checks the messages sent to each queue, oldest
-- first, within QUEUED_CHECK_SECONDS (reap.lua): one entry a message in a stream (about 50 bytes),
-- one member a queue in WATCHED, nothing to remove when the message is taken.
local function watch(q, node, seq, order)
  redis.call('XADD', SENT_PREFIX .. q, '*', 'm', RUN_ID .. '|' .. node .. '|' .. seq .. '|' .. order)
  redis.call('ZADD', WATCHED, 'NX', server_now() + QUEUED_CHECK_SECONDS, q)
end

-- Drop a watch the previous release kept per queued node (WATCHES), where a node's message goes
-- stale: the reaper would judge the node by it.
local function unwatch(node)
  redis.call('ZREM', WATCHES, RUN_ID .. '|' .. node .. '|q', RUN_ID .. '|' .. node .. '|l')
end

-- Everything enqueue needs, read before anything is written: a script that cannot enqueue
-- (its run's template is gone) fails before its first write.
local function ready(node)
  local desc = desc_of(node)
  if desc.w then return {node = node, desc = desc} end  -- a waiting node: no message (park)
  local shared = template_of(desc.t)
  local tpl = shared and redis.call('HGET', TEMPLATES, shared) or redis.call('HGET', TPL, desc.t)  -- TPL: a run of
  if not tpl then error('run ' .. RUN_ID .. ' has no message template ' .. desc.t) end  -- the previous release
  return {node = node, desc = desc, parts = compiled(tpl)}
end

-- Whether node waits for its message to be taken (or for a limit), in a run that still starts nodes.
local function queued_in_live_run(node)
  return redis.call('HGET', STATUS, node) == NODE_STATUS.QUEUED and run_of().status == RUN_STATUS.RUNNING
end

-- The ready node r cannot take limit `block` now: it waits queued, with no message (any message
-- still out for it is stale from here: its seq moves on), not counted as demand (more workers
-- cannot help it), in that limit's waiting set under the time it first began to wait (`was`:
-- where it waited before, if it did).
local function throttle(r, block, was)
  local member = RUN_ID .. '|' .. r.node
  local since = was and was.since or string.format('%.6f', server_now())
  local moved = not was or was.name ~= block.name or was.kv ~= block.kv
  if was and moved then redis.call('ZREM', limit_base(was.name, was.kv) .. 'w', member) end
  next_seq(r.node)
  redis.call('HSET', STATUS, r.node, NODE_STATUS.QUEUED)
  tally(r.node, nil)
  unwatch(r.node)
  redis.call('ZADD', limit_base(block.name, block.kv) .. 'w', since, member)
  redis.call('SADD', LIMIT_PREFIX .. block.name, block.kv)
  redis.call('HSET', THROTTLED, r.node, block.name .. '|' .. since .. '|' .. block.kv)
  if block.due then schedule(block.name, block.kv, block.due) end
  if moved then record(r.node, 'throttled', {'detail', cjson.encode({limit = block.name, key = block.kv})}) end
end

-- The ready sets past the hand-off window (keys.READY_PREFIX): a node waits there queued, counted
-- as demand, with no message, until a worker's take makes room on its queue (refill).
local function ready_keys(q, priority, key)
  local ring = READY_PREFIX .. q .. '|' .. priority
  return READY_PREFIX .. q, ring, ring .. '|' .. key
end

-- Whether q's broker list is full (or nodes already wait for room): a ready node waits its turn.
-- A queue with no window (no live worker yet) never makes it wait, nor does one Lua cannot see
-- (RabbitMQ: the outbox path), whose list in Redis is always empty.
local function backlogged(q)
  local window = redis.call('HGET', WINDOWS, q)
  if not window then return false end
  return redis.call('LLEN', q) >= tonumber(window) or redis.call('EXISTS', READY_PREFIX .. q) == 1
end

-- Node r waits past the window: in its priority's level, under its run's fairness key (served round
-- robin with the others), ordered by its run's submit order and then its rank (critical path).
local function hold(r)
  local priority = r.desc.y or DEFAULT_PRIORITY
  local run = run_of()
  local levels, ring, set = ready_keys(r.desc.q, priority, run.fair or '')
  if next_seq(r.node) > 1 then unwatch(r.node) end  -- a message still out is stale from here
  set_status(r.node, NODE_STATUS.QUEUED, r.desc)
  if redis.call('ZADD', set, tonumber(run.seq or '0') * RANK_SPAN + (r.desc.k or 0), RUN_ID .. '|' .. r.node) == 1
     and redis.call('ZCARD', set) == 1 then
    redis.call('RPUSH', ring, run.fair or '')
    redis.call('ZADD', levels, -priority, priority)
    redis.call('SADD', READY_QUEUES, r.desc.q)
  end
  record(r.node, NODE_STATUS.QUEUED)
end

-- The next node past q's window: the highest priority's next fairness key's first. Nil if none.
local function take_ready(q)
  local levels = READY_PREFIX .. q
  local priority = redis.call('ZRANGE', levels, 0, 0)[1]
  if not priority then return nil end
  local ring = levels .. '|' .. priority
  local key = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
  local set = ring .. '|' .. key
  local member = redis.call('ZPOPMIN', set)[1]
  if redis.call('ZCARD', set) == 0 then
    redis.call('LREM', ring, 0, key)
    if redis.call('LLEN', ring) == 0 then redis.call('ZREM', levels, priority) end
  end
  return member
end

-- Publish a ready node's Celery message straight onto its agent's queue, atomically with its
-- state change: no window in which a ready node is known but not queued. seq numbers the node's
-- messages (only the newest may begin it), order is its place among every message the engine
-- put on its queue (header ORDER_HEADER). A run on a broker Lua cannot reach (RabbitMQ: the
-- run's 'outbox' field) gets its messages written to the outbox in the same script instead,
-- which workers drain to the broker (at least once: a duplicate is dropped by take's checks);
-- the broker redelivers what a dead consumer held, so such a node needs no watch. `held`: it waited
-- past the window (hold), where its queued transition was recorded.
local function dispatch(r, held)
  local order = redis.call('HINCRBY', PUSHED, r.desc.q, 1)
  local seq = next_seq(r.node, order)
  if not held then set_status(r.node, NODE_STATUS.QUEUED, r.desc) end  -- a held node is queued already
  local tid = RUN_ID .. ':' .. r.node .. ':' .. seq
  local run = run_of()
  local message = fill(r.parts, {RUN = RUN_ID, NODE = r.node, ORDER = order, TID = tid, TRACE = run.trace or ''})
  if run.outbox == '1' then
    redis.call('LPUSH', OUTBOX, r.desc.q .. '\n' .. message)
  else
    redis.call('LPUSH', r.desc.q, message)
    watch(r.desc.q, r.node, seq, order)
  end
  if not held then record(r.node, NODE_STATUS.QUEUED) end  -- a held node's was recorded when it was held
end

-- Waiting nodes (dag/waits.py): a wait, an approval or a sleep calls no agent. Ready, it is parked:
-- status waiting, no message, no worker, not demand; ended by an event (event.lua), approvals
-- (approve.lua) or its deadline (pace.lua), through resolve_wait and fail_wait (waits.lua).
local resolve_wait  -- waits.lua: defined after the attempts it ends the node like
-- spawns.lua: a spawning node's child ended; a waiting node (of any kind) stops waiting
local child_ended, stop_waiting

-- A wait's key with its fields filled: {name} from the node's params, {node.field} from a
-- predecessor's result.
local function wait_key(node, template)
  if not string.find(template, '{', 1, true) then return template end
  local params = cjson.decode(redis.call('HGET', PARAMS, node) or '{}').params or {}
  return (string.gsub(template, '{([%w_-]+)%.?([%w_-]*)}', function(name, field)
    local value = params[name]
    if field ~= '' then
      local ok, decoded = pcall(cjson.decode, redis.call('HGET', RESULT, name) or 'null')
      value = ok and type(decoded) == 'table' and decoded[field] or nil
    end
    if value == nil or value == cjson.null then return '' end
    return type(value) == 'table' and cjson.encode(value) or tostring(value)
  end))
end

-- Park ready waiting node r: its deadline (a sleep's end, a timeout) goes to the pacers, a wait
-- joins its event's waiters and takes at once an event sent within its lookback.
local function park(r)
  local w, member = r.desc.w, RUN_ID .. '|' .. r.node
  redis.call('HSET', STATUS, r.node, NODE_STATUS.WAITING)
  tally(r.node, nil)
  redis.call('HINCRBY', FRONTIER, 'waiting|' .. w.k, 1)
  local now = server_now()
  local deadline = (w.s and now + w.s) or w.u or (w.t and now + w.t)
  if deadline then
    local first = redis.call('ZRANGE', WAITS_DUE, 0, 0, 'WITHSCORES')
    redis.call('ZADD', WAITS_DUE, deadline, member)
    if not first[2] or deadline < tonumber(first[2]) then redis.call('PUBLISH', CLOCK_CHANNEL, tostring(deadline)) end
  end
  local detail, found = {kind = w.k}, nil
  if w.k == 'wait' then
    local key = wait_key(r.node, w.key or '')
    local ek = w.e .. '|' .. key
    detail.event, detail.key = w.e, key
    redis.call('HSET', AWAITS, r.node, ek)
    redis.call('SADD', WAITERS_PREFIX .. ek, member)
    if w.l then  -- an event sent within the lookback before the wait began resolves it now
      local id = redis.call('ZREVRANGEBYSCORE', EVENTS_PREFIX .. ek, '+inf', now - w.l, 'LIMIT', 0, 1)[1]
      if id then found = redis.call('HGET', EVENTS_PREFIX .. ek .. '|data', id) end
    end
  end
  record(r.node, NODE_STATUS.WAITING, {'detail', cjson.encode(detail)})
  if found then resolve_wait(r.node, found) end
end

-- A waiting node no longer waits (resolved, timed out, cancelled, skipped): drop its deadline and its
-- place among an event's waiters.
local function unpark(node, w)
  local member = RUN_ID .. '|' .. node
  redis.call('ZREM', WAITS_DUE, member)
  local ek = redis.call('HGET', AWAITS, node)
  if ek then redis.call('SREM', WAITERS_PREFIX .. ek, member) end
  -- what it waited on shows while it waits; its decisions then live on in its result or error
  redis.call('HDEL', AWAITS, node)
  redis.call('HDEL', APPROVALS, node)
  redis.call('HINCRBY', FRONTIER, 'waiting|' .. w.k, -1)
end

-- Queue ready node r: take its limits (or wait for them: throttle), then hand its message to its
-- queue, or wait past the hand-off window for room (hold).
local function push(r)
  if r.desc.w then return park(r) end
  if r.desc.h then
    local was = throttled_on(r.node)
    local block = take_limits(RUN_ID .. '|' .. r.node, r.desc.h, was and was.since or server_now())
    if block then
      throttle(r, block, was)
      return
    end
    if was then redis.call('HDEL', THROTTLED, r.node) end
  end
  if backlogged(r.desc.q) then hold(r) else dispatch(r) end
end

-- Hand up to n nodes waiting past q's window to it, as room is made (a take, a wider window).
-- Nodes that no longer wait (their run ended) are dropped. Returns how many went.
local function refill(q, n)
  local saved, moved = RUN_ID, 0
  for _ = 1, n + 100 do  -- a hundred dead entries (runs ended) at most per call: the rest next time
    if moved >= n then break end
    local member = take_ready(q)
    if not member then break end
    local run_id, node = string.match(member, '^([^|]+)|(.+)$')
    use_run(run_id)
    -- a member whose run's state is broken is dropped, not left to fail every take of the queue
    if queued_in_live_run(node) and pcall(function() dispatch(ready(node), true) end) then moved = moved + 1 end
  end
  use_run(saved)
  return moved
end

local function enqueue(node)
  push(ready(node))
end

-- Queue up to `most` (ROOT_SLICE) more of the run's roots (a run with more roots than that is queued
-- in slices, each its own script call, by its submitter or, if that stopped, by the reaper), or of
-- the successors a completed node left (succeed). In a run
-- that starts nothing new they are dropped: cancel and failure have ended them. The reaper takes
-- the run's next slice `next_in` seconds from now unless another call comes first. Returns the
-- roots still to queue.
local function push_roots(next_in, most)
  if run_of().status == RUN_STATUS.RUNNING then
    -- every message of the slice is read before the first write, as plan_completion reads them
    local slice, rs, seen = redis.call('LRANGE', UNPUSHED, 0, (most or ROOT_SLICE) - 1), {}, {}
    for _, root in ipairs(slice) do
      if not seen[root] and redis.call('HGET', STATUS, root) == NODE_STATUS.PENDING then rs[#rs + 1] = ready(root) end
      seen[root] = true
    end
    redis.call('LTRIM', UNPUSHED, #slice, -1)
    for _, r in ipairs(rs) do push(r) end
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

-- Let up to `budget` waiters of limit (name, kv) go, oldest first, while it has room: each is pushed
-- (and takes its limits) or waits again, here or on another of its limits. Waiters whose node no
-- longer waits (its run ended) are dropped. Waiters left past the budget go to the pacer.
local function wake(name, kv, budget)
  local base, saved, spent = limit_base(name, kv), RUN_ID, true
  for _ = 1, budget do
    local head = redis.call('ZRANGE', base .. 'w', 0, 0)[1]
    if not head then spent = false break end
    redis.call('ZREM', base .. 'w', head)
    local run_id, node = string.match(head, '^([^|]+)|(.+)$')
    use_run(run_id)
    local was = throttled_on(node)
    if was and was.name == name and was.kv == kv and queued_in_live_run(node) then
      -- a waiter whose run's state is broken is dropped, not left to fail every script that frees the limit
      local ok = pcall(function() push(ready(node)) end)
      local now_on = ok and throttled_on(node)
      if now_on and now_on.name == name and now_on.kv == kv then spent = false break end  -- full again
    end
  end
  use_run(saved)
  if redis.call('ZCARD', base .. 'w') == 0 then
    tidy(name, kv)
  elseif spent then
    schedule(name, kv, server_now())  -- the budget ran out with room maybe left: the pacer goes on
  end
end

-- Node no longer holds or waits for its limits (its attempt ended: `ran`, or it ended unstarted):
-- the oldest waiters of each limit it frees go now, in this same script. (The index of a limit's
-- keys keeps a key nothing holds until the next `limits` read tidies it.)
local function let_go(node, desc, ran)
  if not desc.h then return end
  local member = RUN_ID .. '|' .. node
  local was = not ran and throttled_on(node)  -- a node that ran did not wait any more
  if was then
    redis.call('ZREM', limit_base(was.name, was.kv) .. 'w', member)
    redis.call('HDEL', THROTTLED, node)
  end
  for _, h in ipairs(desc.h) do
    local base = limit_base(h[1], h[2])  -- whatever the definition says now: it may have changed
    if redis.call('ZREM', base .. 'h', member) == 1 and redis.call('ZCARD', base .. 'w') > 0 then
      wake(h[1], h[2], WAKE_BUDGET)
    end
  end
end
