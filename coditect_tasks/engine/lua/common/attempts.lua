-- Attempts: leases, settling, completion and failure of a node, and how a worker takes one.

local function lease_member(node, token)
  return RUN_ID .. '|' .. node .. '|' .. token
end

local function release(node, token)
  redis.call('ZREM', LEASES, lease_member(node, token))
end

-- The run has ended: its live state stays in Redis until the recorder has written its history,
-- which then retires it (retire.lua).
local function ended()
  redis.call('ZADD', UNRECORDED, server_now(), RUN_ID)
end

local function announce(final)
  redis.call('PUBLISH', P .. DONE_CHANNEL, final)
end

local function finish()
  local rs = run_of().status
  local final
  if rs == RUN_STATUS.RUNNING then final = RUN_STATUS.SUCCEEDED elseif rs == RUN_STATUS.FAILING then final = RUN_STATUS.FAILED else return end
  set_run('status', final, 'finished_at', NOW)
  count('runs|' .. final)
  observe('run_duration', 'run_duration_sum', redis.call('HGET', RUN, 't0'))
  record('', final)
  announce(final)
  ended()
  child_ended(final)
end

local function fenced(node, token)
  return redis.call('HGET', STATUS, node) == NODE_STATUS.RUNNING and redis.call('HGET', ATTEMPTS, node) == token
end

-- Foreach item ends with `status`: one fewer of its node's items is queued or running.
local function close_item(item, status)
  set_status(item, status)
  redis.call('HINCRBY', FANOUT, parent_of(item) .. '|open', -1)
end

-- A fanned-out node in a run that starts nothing new ends (skipped) once none of its items is
-- queued or running any more.
local function close_parent(parent)
  local token = redis.call('HGET', ATTEMPTS, parent)
  if not fenced(parent, token) or run_of().status == RUN_STATUS.RUNNING then return end
  if tonumber(redis.call('HGET', FANOUT, parent .. '|open')) > 0 then return end
  redis.call('HINCRBY', RUN, 'active', -1)
  set_status(parent, NODE_STATUS.SKIPPED)
  record(parent, NODE_STATUS.SKIPPED)
  if redis.call('HINCRBY', RUN, 'remaining', -1) == 0 then finish() end
end

-- Skip every node (and foreach item) that has not started: the run has failed and starts
-- nothing new. Returns the nodes remaining.
local function skip_unstarted()
  local all = redis.call('HGETALL', STATUS)
  local parents = {}
  for i = 1, #all, 2 do
    local id, st = all[i], all[i + 1]
    local parent = parent_of(id)
    if st == NODE_STATUS.QUEUED then let_go(id, desc_of(id)) end
    if parent then
      if st == NODE_STATUS.QUEUED then
        close_item(id, NODE_STATUS.SKIPPED)
        parents[parent] = true
      end
    elseif st == NODE_STATUS.PENDING or st == NODE_STATUS.QUEUED or st == NODE_STATUS.WAITING then
      if st == NODE_STATUS.WAITING then stop_waiting(id, {}) end
      set_status(id, NODE_STATUS.SKIPPED)
      record(id, NODE_STATUS.SKIPPED)
      redis.call('HINCRBY', RUN, 'remaining', -1)
    end
  end
  for parent in pairs(parents) do close_parent(parent) end
  return tonumber(redis.call('HGET', RUN, 'remaining'))
end

-- Queue node again because its attempt or its message was lost: `error` is kept as the
-- node's error, `extra` goes into the history record; counted as a failover of its agent.
-- `r` is what ready(node) gave, when the caller has read it already.
local function requeue_lost(node, error, extra, r)
  r = r or ready(node)
  redis.call('HSET', ERROR, node, error)
  record(node, 'requeued', extra)
  count('failovers|' .. agent_of(r.desc))
  push(r)
end

-- End the running attempt `token` of node: drop its lease, count its outcome under the agent
-- it ran as, take it off the run's running count. Returns the node's description, or nil if
-- that attempt no longer owns the node (stale: the caller changes nothing). `live`: the caller has
-- just found that it does (fenced), in this call.
local function settle(node, token, outcome, live)
  if not (live or fenced(node, token)) then return nil end
  local desc = desc_of(node)
  release(node, token)
  let_go(node, desc, true)
  if not desc.item then
    if outcome then observe_end(node, agent_of(desc), outcome) end
    redis.call('HINCRBY', RUN, 'active', -1)
    if outcome ~= NODE_STATUS.SUCCEEDED then stopped(desc) end
  end
  return desc
end

-- A node whose attempt has ended (settled) in a run that starts nothing new: it is skipped.
local function skip_settled(node)
  let_go(node, desc_of(node))  -- a queued node's limits (an attempt's went when it settled)
  local parent = parent_of(node)
  if parent then
    close_item(node, NODE_STATUS.SKIPPED)
    close_parent(parent)
    return
  end
  set_status(node, NODE_STATUS.SKIPPED)
  record(node, NODE_STATUS.SKIPPED)
  if redis.call('HINCRBY', RUN, 'remaining', -1) == 0 then finish() end
end

-- Take a running attempt back (its worker is gone) and queue the node again.
local function requeue(node, token, why)
  local r = ready(node)  -- fails here, before anything is written, if the node cannot be queued
  settle(node, token, nil)
  requeue_lost(node, why, {'attempt', token, 'error', why}, r)
end

-- What completing node makes ready, read before anything is written: its successors, and the
-- messages of those it is the last predecessor of, up to `most` of them (none: no bound). The
-- successors past the last one read (`scanned`) are counted down by succeed, which leaves those
-- it makes ready (`later`) to slices: a fan-out of 1,000 reads 16 counters here, not 1,000.
local function plan_completion(node, most)
  local plan = {succs = {}, ready = {}, later = {}, scanned = 0}
  if run_of().status == RUN_STATUS.RUNNING then
    plan.succs = desc_of(node).s
    for i, succ in ipairs(plan.succs) do
      if most and #plan.ready >= most then break end
      plan.scanned = i
      if tonumber(redis.call('HGET', PENDING, succ)) == 1 then plan.ready[#plan.ready + 1] = ready(succ) end
    end
  end
  return plan
end

-- Count down the pending predecessors of plan's successors; those past the ones plan read that
-- reach 0 go to plan.later (the completing script is what the first successor waits for).
local function count_down(plan)
  for _, i in ipairs(add_each(PENDING, plan.succs, -1, 0)) do
    if i > plan.scanned then plan.later[#plan.later + 1] = plan.succs[i] end
  end
end

-- Whether a completion in this call left successors in UNPUSHED, for its process to queue in slices.
local left_over = false

-- Node succeeded with JSON result (`extra`: more of its history record): record it, count down
-- its successors, queue the ones plan found ready. (`status` SKIPPED: a wait skipped at its timeout,
-- whose successors go on all the same.)
local function succeed(node, result, plan, extra, status)
  status = status or NODE_STATUS.SUCCEEDED
  set_status(node, status)
  redis.call('HSET', RESULT, node, result)
  redis.call('HSET', FINISHED, node, NOW)
  local remaining = redis.call('HINCRBY', RUN, 'remaining', -1)
  extra[#extra + 1], extra[#extra + 2] = 'result', string.sub(result, 1, HISTORY_CAP)
  record(node, status, extra)
  count_down(plan)
  for _, r in ipairs(plan.ready) do push(r) end
  if #plan.later > 0 then  -- the rest of a wide fan-out: queued in slices (push_roots), as roots are
    left_over = true
    for first = 1, #plan.later, 1000 do
      redis.call('RPUSH', UNPUSHED, unpack(plan.later, first, math.min(first + 999, #plan.later)))
    end
    redis.call('ZADD', SUBMITTING, server_now() + SUBMIT_STALL_SECONDS, RUN_ID)
  end
  if remaining == 0 then finish() end
end

-- Node succeeded in attempt token with JSON result (span: its traceparent, for its successors'
-- spans to hang under); its caller has found that attempt live (fenced).
local function complete_node(node, token, result, span, plan)
  settle(node, token, NODE_STATUS.SUCCEEDED, true)
  if span and span ~= '' then redis.call('HSET', TRACE, node, span) end
  succeed(node, result, plan, {'attempt', token})
end

-- Node failed for good (`extra`: more of its history record): the run starts nothing new and
-- ends failed once its running nodes are done.
local function fail_for_good(node, err, extra)
  set_status(node, NODE_STATUS.FAILED)
  redis.call('HSET', ERROR, node, err)
  redis.call('HSET', FINISHED, node, NOW)
  local remaining = redis.call('HINCRBY', RUN, 'remaining', -1)
  extra[#extra + 1], extra[#extra + 2] = 'error', string.sub(err, 1, HISTORY_CAP)
  record(node, NODE_STATUS.FAILED, extra)
  if run_of().status == RUN_STATUS.RUNNING then
    set_run('status', RUN_STATUS.FAILING, 'error', 'node ' .. node .. ' failed: ' .. err)
    remaining = skip_unstarted()
  end
  if remaining == 0 then finish() end
end

-- Node failed for good in attempt token.
local function fail_node(node, token, err)
  settle(node, token, NODE_STATUS.FAILED)
  fail_for_good(node, err, {'attempt', token})
end

-- A worker takes node (worker name `worker`) from the message with task id `task_id`; `breaker`,
-- if not empty, is the key prefix of the agent's circuit breaker, whose state and failure count
-- come back with a plain node's attempt (the worker would read them next: one round trip less).
-- Only the node's newest message may begin it (its task id ends in the node's seq): one the
-- engine replaced (requeued, rerouted, retried) is stale and dropped. A node whose attempt still
-- holds a live lease is not begun again: a redelivered or duplicated message is dropped. Both
-- are counted as duplicates. Nothing is written before those checks. Returns the named table
-- {ok = 1, token (the attempt's), record (the node's JSON; a foreach item's is its node's),
-- upstream (JSON), items (JSON: the foreach items, an item's own value; or false), parent
-- (traceparent), links (JSON list of the predecessors' traceparents), retried (retries taken),
-- breaker, failures (the breaker's state and failure count)}, or {ok = 0, why}. The parent is the span of the
-- predecessor that finished last (it let this node start), else the run's root span.
local function take_message(node, worker, task_id, breaker)
  local st = redis.call('HGET', STATUS, node)
  local desc = (st == NODE_STATUS.QUEUED or st == NODE_STATUS.RUNNING) and desc_of(node)
  redis.call('SREM', RESERVED_PREFIX .. worker, RUN_ID .. '|' .. node)  -- this worker holds it no more
  if not desc then return {ok = 0, why = st or 'missing'}, nil end
  if string.match(task_id, ':(%d+)$') ~= seq_of(node) then
    count('duplicates|' .. agent_of(desc))
    return {ok = 0, why = 'stale'}, desc.q
  end
  local previous = redis.call('HGET', ATTEMPTS, node) or '0'
  if st == NODE_STATUS.RUNNING and redis.call('HEXISTS', FANOUT, node) == 1 then
    count('duplicates|' .. agent_of(desc))  -- a foreach node runs on in its items
    return {ok = 0, why = 'duplicate'}, desc.q
  end
  -- (A begin repeated after its reply was lost is dropped too: its node runs again once the lease
  -- lapses, a few seconds later. Telling it apart from a redelivery of the same message to the same
  -- worker is not possible here, and that one must not run twice.)
  if st == NODE_STATUS.RUNNING then
    local expiry = redis.call('ZSCORE', LEASES, lease_member(node, previous))
    if expiry and tonumber(expiry) > server_now() then
      count('duplicates|' .. agent_of(desc))
      return {ok = 0, why = 'duplicate'}, desc.q
    end
  end
  local rs = run_of().status
  if not packed() then unwatch(node) end  -- a watch the previous release kept for this message
  if rs ~= RUN_STATUS.RUNNING then
    if rs == RUN_STATUS.FAILING and st == NODE_STATUS.RUNNING then
      -- a redelivery after its worker died: the failed run will not start it again
      if settle(node, previous, nil) then skip_settled(node) end
    elseif rs == RUN_STATUS.FAILING then
      skip_settled(node)  -- queued after the run began to fail: it will not start now
    end
    return {ok = 0, why = rs or 'missing'}, desc.q
  end
  if st == NODE_STATUS.RUNNING then release(node, previous) elseif not desc.item then redis.call('HINCRBY', RUN, 'active', 1) end
  local token = redis.call('HINCRBY', ATTEMPTS, node, 1)
  set_status(node, NODE_STATUS.RUNNING, desc)
  if st == NODE_STATUS.QUEUED then started(desc) end
  redis.call('HSET', STARTED, node, NOW)
  redis.call('HSET', WORKER, node, worker)
  redis.call('HSET', TASK, node, task_id)
  redis.call('HSET', T0, node, server_now())
  record(node, NODE_STATUS.RUNNING, {'attempt', token, 'worker', worker})
  if not desc.item then count('attempts|' .. agent_of(desc)) end
  redis.call('ZADD', LEASES, server_now() + LEASE_SECONDS, lease_member(node, token))
  local parts, results = {}, values_of(RESULT, desc.p)
  for i, pred in ipairs(desc.p) do
    parts[i] = cjson.encode(pred) .. ':' .. (results[i] or 'null')
  end
  local items, rec = false, redis.call('HGET', PARAMS, node)
  if desc.item then
    items, rec = redis.call('HGET', ITEMS, node), redis.call('HGET', ITEMS, parent_of(node) .. '|record')
  elseif desc.f then
    items = redis.call('HGET', RESULT, desc.f) or 'null'
  end
  local parent, links, latest, traced, spans = run_of().trace or '', {}, '', {}, {}
  for i, span in ipairs(values_of(TRACE, desc.p)) do
    if span then
      links[#links + 1] = '"' .. span .. '"'  -- hex digits and dashes: safe to quote as is
      traced[#traced + 1], spans[#spans + 1] = desc.p[i], span
    end
  end
  local finished = values_of(FINISHED, traced)
  for i = 1, #traced do
    local at = finished[i] or ''
    if at >= latest then latest, parent = at, spans[i] end
  end
  local b = {false, false}
  if (breaker or '') ~= '' and not desc.item then b = redis.call('MGET', breaker .. 'state', breaker .. 'fail_counter') end
  return {ok = 1, token = token, record = rec, upstream = '{' .. table.concat(parts, ',') .. '}', items = items,
          parent = parent, links = '[' .. table.concat(links, ',') .. ']',
          retried = tonumber(redis.call('HGET', RETRIED, node) or '0'), breaker = b[1], failures = b[2]}, desc.q
end

-- Take (take_message); whatever became of the message, it left its queue: the next node waiting past
-- the window takes its place.
local function take(node, worker, task_id, breaker)
  local reply, q = take_message(node, worker, task_id, breaker)
  if q then refill(q, 1) end
  return reply
end
