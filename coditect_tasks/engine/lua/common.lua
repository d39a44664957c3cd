-- Shared helpers of every engine script, after the constants keys.py generates (key names,
-- leases, caps). ARGV[1] is the run id (empty for scripts that span runs), ARGV[2] the
-- caller's ISO-8601 UTC timestamp; a script's own arguments start at ARGV[3]. Keys are
-- derived from the run id.
local NOW = ARGV[2]
use_run(ARGV[1])

local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

local function count(name)
  redis.call('HINCRBY', METRICS, name, 1)
end

-- Item k of a foreach node N is the pseudo-node 'N#k' in the run's hashes (node ids cannot hold
-- '#'): its own message, seq, lease, attempts and retries, as a node has. Items leave the run's
-- counters (remaining, running, metrics) and its history to their node, which they complete.
local function parent_of(node)
  return string.match(node, '^(.+)#%d+$')
end

-- A node's description: queue q, template t, successors s, predecessors p, foreach x/f. An
-- item's is its node's, with no successors.
local function desc_of(node)
  local parent = parent_of(node)
  if parent then
    local d = cjson.decode(redis.call('HGET', NODE, parent))
    return {q = d.q, t = d.t, s = {}, p = d.p, item = true}
  end
  return cjson.decode(redis.call('HGET', NODE, node))
end

-- The agent a description's messages go to (its queue is 'agents.<name>'; a fallback reroutes it).
local function agent_of(desc)
  return string.sub(desc.q, #AGENT_QUEUE_PREFIX + 1)
end

-- The frontier an autoscaler reads (FRONTIER): a node counts once, under its agent, as demand
-- while queued, reserved or running (a fanned-out node's items count instead of it), or as
-- upcoming while pending with every unfinished predecessor running (WAITING is 0): work that
-- arrives within one node time. PHASE remembers where a node counts, so a transition repeated
-- by a retried script never counts twice, and a rerouted node moves to its fallback's count.
local function tally(node, phase, desc)
  local have = redis.call('HGET', PHASE, node)
  local want = phase and (phase .. '|' .. agent_of(desc or desc_of(node))) or false
  if have == want then return end
  if have then redis.call('HINCRBY', FRONTIER, have, -1) end
  if want then
    redis.call('HINCRBY', FRONTIER, want, 1)
    redis.call('HSET', PHASE, node, want)
  else
    redis.call('HDEL', PHASE, node)
  end
end

-- Every node status is written here (the submit writes pending), so the frontier follows it.
local function set_status(node, st, desc)
  redis.call('HSET', STATUS, node, st)
  if st == NODE_STATUS.QUEUED or (st == NODE_STATUS.RUNNING and redis.call('HEXISTS', FANOUT, node) == 0) then
    tally(node, 'demand', desc)
  else
    tally(node, nil)
  end
end

-- Node (described by desc) began running: each pending successor waits on one predecessor fewer.
local function started(desc)
  for _, succ in ipairs(desc.s) do
    if redis.call('HINCRBY', WAITING, succ, -1) == 0 and redis.call('HGET', STATUS, succ) == NODE_STATUS.PENDING then
      tally(succ, 'upcoming')
    end
  end
end

-- Node stopped running without succeeding (requeued, retried, rerouted, failed): its pending
-- successors wait on it again.
local function stopped(desc)
  for _, succ in ipairs(desc.s) do
    if redis.call('HINCRBY', WAITING, succ, 1) == 1 then tally(succ, nil) end
  end
end

-- Observe the seconds since t0 (a server_now() reading) in a histogram: one count in
-- field `buckets|<le>` for the first bound that holds it, the seconds added to field `sum`.
local function observe(buckets, sum, t0)
  if not t0 then return end
  local seconds = server_now() - tonumber(t0)
  local le = '+Inf'
  for _, bound in ipairs(DURATION_BUCKETS) do
    if seconds <= bound then le = tostring(bound) break end
  end
  count(buckets .. '|' .. le)
  redis.call('HINCRBYFLOAT', METRICS, sum, seconds)
end

-- An attempt of node by agent ended (succeeded, failed, retried, rerouted): count it and
-- observe how long it ran.
local function observe_end(node, agent, outcome)
  count('nodes|' .. agent .. '|' .. outcome)
  observe('duration|' .. agent, 'duration_sum|' .. agent, redis.call('HGET', T0, node))
end

-- A transition: appended to the history stream, counted in the run's hash (events), and, when a
-- client follows the run (the event stream, `dag events`), published on its events channel as
-- '<stream id> <JSON>' without the result.
local function record(node, status, extra)
  if parent_of(node) then return end
  local args = {'XADD', HISTORY, 'MAXLEN', '~', HISTORY_MAX_ENTRIES, '*', 'run', RUN_ID, 'node', node,
                'status', status, 'at', NOW}
  if extra then
    for i = 1, #extra do args[#args + 1] = extra[i] end
  end
  local id = redis.call(unpack(args))
  local n = redis.call('HINCRBY', RUN, 'events', 1)  -- a follower that misses one sees the count skip
  local channel = P .. EVENTS_CHANNEL
  if redis.call('PUBSUB', 'NUMSUB', channel)[2] == 0 then return id end
  local event = {node = node, status = status, at = NOW, n = n}
  for i = 1, #(extra or {}), 2 do
    if extra[i] ~= 'result' then event[extra[i]] = extra[i + 1] end
  end
  redis.call('PUBLISH', channel, id .. ' ' .. cjson.encode(event))
  return id
end

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
  local rs = redis.call('HGET', RUN, 'status')
  local final
  if rs == RUN_STATUS.RUNNING then final = RUN_STATUS.SUCCEEDED elseif rs == RUN_STATUS.FAILING then final = RUN_STATUS.FAILED else return end
  redis.call('HSET', RUN, 'status', final, 'finished_at', NOW)
  count('runs|' .. final)
  observe('run_duration', 'run_duration_sum', redis.call('HGET', RUN, 't0'))
  record('', final)
  announce(final)
  ended()
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
  if not fenced(parent, token) or redis.call('HGET', RUN, 'status') == RUN_STATUS.RUNNING then return end
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
    if parent then
      if st == NODE_STATUS.QUEUED then
        close_item(id, NODE_STATUS.SKIPPED)
        parents[parent] = true
      end
    elseif st == NODE_STATUS.PENDING or st == NODE_STATUS.QUEUED then
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

-- Whether node waits for its message to be taken, in a run that still starts nodes.
local function queued_in_live_run(node)
  return redis.call('HGET', STATUS, node) == NODE_STATUS.QUEUED and redis.call('HGET', RUN, 'status') == RUN_STATUS.RUNNING
end

-- End the running attempt `token` of node: drop its lease, count its outcome under the agent
-- it ran as, take it off the run's running count. Returns the node's description, or nil if
-- that attempt no longer owns the node (stale: the caller changes nothing).
local function settle(node, token, outcome)
  if not fenced(node, token) then return nil end
  local desc = desc_of(node)
  release(node, token)
  if not desc.item then
    if outcome then observe_end(node, agent_of(desc), outcome) end
    redis.call('HINCRBY', RUN, 'active', -1)
    if outcome ~= NODE_STATUS.SUCCEEDED then stopped(desc) end
  end
  return desc
end

-- A node whose attempt has ended (settled) in a run that starts nothing new: it is skipped.
local function skip_settled(node)
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
-- messages of those it is the last predecessor of.
local function plan_completion(node)
  local plan = {succs = {}, ready = {}}
  if redis.call('HGET', RUN, 'status') == RUN_STATUS.RUNNING then
    plan.succs = desc_of(node).s
    for _, succ in ipairs(plan.succs) do
      if tonumber(redis.call('HGET', PENDING, succ)) == 1 then plan.ready[#plan.ready + 1] = ready(succ) end
    end
  end
  return plan
end

-- Node succeeded in attempt token with JSON result (span: its traceparent, for its successors'
-- spans to hang under): record it, count down its successors, queue the ones plan found ready.
local function complete_node(node, token, result, span, plan)
  settle(node, token, NODE_STATUS.SUCCEEDED)
  if span and span ~= '' then redis.call('HSET', TRACE, node, span) end
  set_status(node, NODE_STATUS.SUCCEEDED)
  redis.call('HSET', RESULT, node, result)
  redis.call('HSET', FINISHED, node, NOW)
  local remaining = redis.call('HINCRBY', RUN, 'remaining', -1)
  record(node, NODE_STATUS.SUCCEEDED, {'attempt', token, 'result', string.sub(result, 1, HISTORY_CAP)})
  for _, succ in ipairs(plan.succs) do redis.call('HINCRBY', PENDING, succ, -1) end
  for _, r in ipairs(plan.ready) do push(r) end
  if remaining == 0 then finish() end
end

-- Node failed for good in attempt token: the run starts nothing new and ends failed once its
-- running nodes are done.
local function fail_node(node, token, err)
  settle(node, token, NODE_STATUS.FAILED)
  set_status(node, NODE_STATUS.FAILED)
  redis.call('HSET', ERROR, node, err)
  redis.call('HSET', FINISHED, node, NOW)
  local remaining = redis.call('HINCRBY', RUN, 'remaining', -1)
  record(node, NODE_STATUS.FAILED, {'attempt', token, 'error', string.sub(err, 1, HISTORY_CAP)})
  if redis.call('HGET', RUN, 'status') == RUN_STATUS.RUNNING then
    redis.call('HSET', RUN, 'status', RUN_STATUS.FAILING, 'error', 'node ' .. node .. ' failed: ' .. err)
    remaining = skip_unstarted()
  end
  if remaining == 0 then finish() end
end

-- A worker takes node (worker name `worker`) from the message with task id `task_id`; `breaker`,
-- if not empty, is the key prefix of the agent's circuit breaker, whose state and failure count
-- come back with a plain node's attempt (the worker would read them next: one round trip less).
-- Only the node's newest message may begin it (its task id ends in the node's seq): one the
-- engine replaced (requeued, rerouted, retried) is stale and dropped. A node whose attempt still
-- holds a live lease is not begun again: a redelivered or duplicated message is dropped. Both
-- are counted as duplicates. Nothing is written before those checks. Returns {1, attempt token,
-- node record JSON (a foreach item's is its node's), upstream JSON, foreach items JSON (an item's
-- own value) or false, parent traceparent, JSON list of the predecessors' traceparents, retries
-- taken, breaker state, breaker failures}, or {0, why}. The parent is the span of the
-- predecessor that finished last (it let this node start), else the run's root span.
local function take(node, worker, task_id, breaker)
  local st = redis.call('HGET', STATUS, node)
  local desc = (st == NODE_STATUS.QUEUED or st == NODE_STATUS.RUNNING) and desc_of(node)
  redis.call('SREM', RESERVED_PREFIX .. worker, RUN_ID .. '|' .. node)  -- this worker holds it no more
  if not desc then return {0, st or 'missing'} end
  if string.match(task_id, ':(%d+)$') ~= (redis.call('HGET', SEQ, node) or '') then
    count('duplicates|' .. agent_of(desc))
    return {0, 'stale'}
  end
  local previous = redis.call('HGET', ATTEMPTS, node) or '0'
  if st == NODE_STATUS.RUNNING and redis.call('HEXISTS', FANOUT, node) == 1 then
    count('duplicates|' .. agent_of(desc))  -- a foreach node runs on in its items
    return {0, 'duplicate'}
  end
  -- (A begin repeated after its reply was lost is dropped too: its node runs again once the lease
  -- lapses, a few seconds later. Telling it apart from a redelivery of the same message to the same
  -- worker is not possible here, and that one must not run twice.)
  if st == NODE_STATUS.RUNNING then
    local expiry = redis.call('ZSCORE', LEASES, lease_member(node, previous))
    if expiry and tonumber(expiry) > server_now() then
      count('duplicates|' .. agent_of(desc))
      return {0, 'duplicate'}
    end
  end
  local rs = redis.call('HGET', RUN, 'status')
  unwatch(node)
  if rs ~= RUN_STATUS.RUNNING then
    if rs == RUN_STATUS.FAILING and st == NODE_STATUS.RUNNING then
      -- a redelivery after its worker died: the failed run will not start it again
      if settle(node, previous, nil) then skip_settled(node) end
    elseif rs == RUN_STATUS.FAILING then
      skip_settled(node)  -- queued after the run began to fail: it will not start now
    end
    return {0, rs or 'missing'}
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
  local parts = {}
  for _, pred in ipairs(desc.p) do
    parts[#parts + 1] = cjson.encode(pred) .. ':' .. (redis.call('HGET', RESULT, pred) or 'null')
  end
  local items, rec = false, redis.call('HGET', PARAMS, node)
  if desc.item then
    items, rec = redis.call('HGET', ITEMS, node), redis.call('HGET', ITEMS, parent_of(node) .. '|record')
  elseif desc.f then
    items = redis.call('HGET', RESULT, desc.f) or 'null'
  end
  local parent, links, latest = redis.call('HGET', RUN, 'trace') or '', {}, ''
  for _, pred in ipairs(desc.p) do
    local tp = redis.call('HGET', TRACE, pred)
    if tp then
      links[#links + 1] = '"' .. tp .. '"'  -- hex digits and dashes: safe to quote as is
      local finished = redis.call('HGET', FINISHED, pred) or ''
      if finished >= latest then latest, parent = finished, tp end
    end
  end
  local b = {false, false}
  if (breaker or '') ~= '' and not desc.item then b = redis.call('MGET', breaker .. 'state', breaker .. 'fail_counter') end
  return {1, token, rec, '{' .. table.concat(parts, ',') .. '}', items, parent,
          '[' .. table.concat(links, ',') .. ']', tonumber(redis.call('HGET', RETRIED, node) or '0'), b[1], b[2]}
end

-- A pool process that has finished a node takes the next message of its own queue (the oldest)
-- itself, in the same script: one round trip per node instead of four (the consumer's ack, pop
-- and unacked record, then begin). Only the engine's own messages for the same task with the same
-- time limits (`hard`, `soft`: '' for none) are taken; any other message is put back where it
-- was and the process returns to Celery. A stale or duplicate message is dropped, as begin drops
-- it. The node taken is noted under the running message's id `via` (TAKEN_AFTER_PREFIX, for `ttl`
-- seconds) for the main process's hard-time-limit and shutdown paths. Returns {run, node, task
-- id} and take's reply, or nil.
local function same_limit(value, want)
  if want == '' then return type(value) ~= 'number' end
  return type(value) == 'number' and value == tonumber(want)
end

local function take_next(queue, task, hard, soft, worker, breaker, via, ttl)
  for _ = 1, TAKE_NEXT_TRIES do
    local raw = redis.call('RPOP', queue)
    if not raw then return nil end
    local ok, env = pcall(cjson.decode, raw)
    if not (ok and type(env) == 'table') then env = {} end
    local headers = type(env.headers) == 'table' and env.headers or {}
    local limits = type(headers.timelimit) == 'table' and headers.timelimit or {}
    local okb, body = pcall(cjson.decode, type(env.body) == 'string' and env.body or '')
    local kwargs = okb and type(body) == 'table' and type(body[2]) == 'table' and body[2] or {}
    local run, node, task_id = kwargs.run_id, kwargs.node_id, headers.id
    if not (headers[ORDER_HEADER] and headers.task == task and same_limit(limits[1], hard)
            and same_limit(limits[2], soft) and type(run) == 'string' and type(node) == 'string'
            and type(task_id) == 'string') then
      redis.call('RPUSH', queue, raw)  -- a plain call, or other limits: Celery runs it
      return nil
    end
    use_run(run)
    local taken, reply = pcall(take, node, worker, task_id, breaker)
    if not taken then
      redis.call('RPUSH', queue, raw)  -- its run's state is broken or going: leave it to begin's checks
      return nil
    end
    if reply[1] == 1 then
      redis.call('SET', TAKEN_AFTER_PREFIX .. via, run .. '|' .. node .. '|' .. task_id, 'EX', ttl)
      return {run, node, task_id}, reply
    end
  end
  return nil
end
