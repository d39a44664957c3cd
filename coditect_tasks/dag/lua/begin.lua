-- A worker takes node ARGV[3] (worker name ARGV[4]) from the message with task id ARGV[5];
-- ARGV[6], if not empty, is the key prefix of the agent's circuit breaker, whose state and
-- failure count come back with the attempt (the worker would read them next: one round trip less).
-- Only the node's newest message may begin it (its task id ends in the node's seq): one the
-- engine replaced (requeued, rerouted, retried) is stale and dropped. A node whose attempt still
-- holds a live lease is not begun again: a redelivered or duplicated message is dropped. Both
-- are counted as duplicates. Nothing is written before those checks. Returns {1, attempt token,
-- node record JSON (a foreach item's is its node's), upstream JSON, foreach items JSON (an item's
-- own value) or false, parent traceparent,
-- JSON list of the predecessors' traceparents}, or {0, why}. The parent is the span of
-- the predecessor that finished last (it let this node start), else the run's root span.
local node, worker, task_id = ARGV[3], ARGV[4], ARGV[5]
local st = redis.call('HGET', STATUS, node)
local desc = (st == 'queued' or st == 'running') and desc_of(node)
redis.call('SREM', RESERVED_PREFIX .. worker, RUN_ID .. '|' .. node)  -- this worker holds it no more
if not desc then return {0, st or 'missing'} end
if string.match(task_id, ':(%d+)$') ~= (redis.call('HGET', SEQ, node) or '') then
  count('duplicates|' .. agent_of(desc))
  return {0, 'stale'}
end
local previous = redis.call('HGET', ATTEMPTS, node) or '0'
if st == 'running' and redis.call('HEXISTS', FANOUT, node) == 1 then
  count('duplicates|' .. agent_of(desc))  -- a foreach node runs on in its items
  return {0, 'duplicate'}
end
-- (A begin repeated after its reply was lost is dropped too: its node runs again once the lease
-- lapses, a few seconds later. Telling it apart from a redelivery of the same message to the same
-- worker is not possible here, and that one must not run twice.)
if st == 'running' then
  local expiry = redis.call('ZSCORE', LEASES, lease_member(node, previous))
  if expiry and tonumber(expiry) > server_now() then
    count('duplicates|' .. agent_of(desc))
    return {0, 'duplicate'}
  end
end
local rs = redis.call('HGET', RUN, 'status')
unwatch(node)
if rs ~= 'running' then
  if rs == 'failing' and st == 'running' then
    -- a redelivery after its worker died: the failed run will not start it again
    if settle(node, previous, nil) then skip_settled(node) end
  elseif rs == 'failing' then
    skip_settled(node)  -- queued after the run began to fail: it will not start now
  end
  return {0, rs or 'missing'}
end
if st == 'running' then release(node, previous) elseif not desc.item then redis.call('HINCRBY', RUN, 'running', 1) end
local token = redis.call('HINCRBY', ATTEMPTS, node, 1)
set_status(node, 'running', desc)
if st == 'queued' then started(desc) end
redis.call('HSET', STARTED, node, NOW)
redis.call('HSET', WORKER, node, worker)
redis.call('HSET', TASK, node, task_id)
redis.call('HSET', T0, node, server_now())
record(node, 'running', {'attempt', token, 'worker', worker})
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
local breaker = {false, false}
if (ARGV[6] or '') ~= '' then breaker = redis.call('MGET', ARGV[6] .. 'state', ARGV[6] .. 'fail_counter') end
return {1, token, rec, '{' .. table.concat(parts, ',') .. '}', items, parent,
        '[' .. table.concat(links, ',') .. ']', tonumber(redis.call('HGET', RETRIED, node) or '0'),
        breaker[1], breaker[2]}
