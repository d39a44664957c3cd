-- Spawns: a node whose agent returned child DAGs (spawn.lua) waits, holding no worker, while its
-- children run as runs of their own; each child's end is counted here (child_ended, from finish
-- and cancel), and the last one ends the node. A run is started here too (start_run), for submit
-- and spawn alike, and cancelled (cancel_run), with every descendant, for cancel and for a
-- spawning node that will not go on.
-- Hashes: CHILDREN node -> JSON list of its children's run ids (kept with the run's document);
-- SPAWNS '<node>|left' (children not ended), '<node>|retry' (seconds before the node's next
-- attempt if a child fails; -1: it fails), '<node>|one' ('1': one child, its results alone),
-- '<node>|nodes' (the children's nodes, counted in the root's tree until a retry replaces them),
-- '<child run id>' -> 'r<results JSON>' or 'e<error>' once that child ended.

-- The run use_run points at, written SUBMITTING, starts: RUNNING, its number in the run sequence,
-- its clock and its first history entry. Its caller queues its roots.
local function start_run()
  set_run('status', RUN_STATUS.RUNNING, 'seq', redis.call('INCR', RUN_SEQ))
  count('runs_submitted')
  redis.call('HSET', RUN, 't0', server_now())
  -- where the run's entries begin in the history stream: a follower reads from there (dag/events.py)
  redis.call('HSET', RUN, 'first_event', record('', RUN_STATUS.RUNNING))
end

-- The results of the run use_run points at, as its document gives them: node -> result.
local function run_results()
  local all, parts = redis.call('HGETALL', RESULT), {}
  for i = 1, #all, 2 do
    if not parent_of(all[i]) then parts[#parts + 1] = cjson.encode(all[i]) .. ':' .. all[i + 1] end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- The SPAWNS fields of a node waiting for its children.
local function spawn_fields(node)
  return {node .. '|left', node .. '|retry', node .. '|one', node .. '|nodes'}
end

-- Node's children have all ended with its attempt still the spawning one: the node succeeds with
-- their results, or, if one failed, is retried (its policy allowed it when it spawned) or fails,
-- naming every failed child.
local function children_done(node)
  local ids = cjson.decode(redis.call('HGET', CHILDREN, node))
  local results, errors, fields = {}, {}, spawn_fields(node)
  for i, id in ipairs(ids) do
    local outcome = redis.call('HGET', SPAWNS, id) or 'eended with no outcome'
    if string.sub(outcome, 1, 1) == 'r' then results[i] = string.sub(outcome, 2)
    else errors[#errors + 1] = 'child run ' .. id .. ' ' .. string.sub(outcome, 2) end
    fields[#fields + 1] = id
  end
  local retry = tonumber(redis.call('HGET', SPAWNS, node .. '|retry') or '-1')
  local one = redis.call('HGET', SPAWNS, node .. '|one') == '1'
  local nodes = tonumber(redis.call('HGET', SPAWNS, node .. '|nodes') or '0')
  redis.call('HDEL', SPAWNS, unpack(fields))
  redis.call('HINCRBY', FRONTIER, 'waiting|spawn', -1)
  started(desc_of(node))  -- it blocks its successors no more (settle counted it back as not running)
  if #errors == 0 then
    local result = one and results[1] or '[' .. table.concat(results, ',') .. ']'
    if #result <= MAX_RESULT_BYTES then return succeed(node, result, plan_completion(node), {}) end
    -- the same children would make the same results: no retry
    return fail_for_good(node, 'children results are ' .. #result .. ' bytes, over the limit of ' .. MAX_RESULT_BYTES, {})
  end
  local err = table.concat(errors, '; ')
  if retry < 0 or run_of().status ~= RUN_STATUS.RUNNING then return fail_for_good(node, err, {}) end
  -- as retry.lua does for an attempt that failed: the next one spawns its children anew, in their place
  stopped(desc_of(node))
  local root = redis.call('HGET', RUN, 'root') or RUN_ID
  redis.call('HINCRBY', RUN_KEY_PREFIX .. root .. ':run', 'tree', -nodes)
  redis.call('HSET', ERROR, node, err)
  redis.call('HINCRBY', RETRIED, node, 1)
  record(node, 'retrying', {'attempt', redis.call('HGET', ATTEMPTS, node), 'error', string.sub(err, 1, HISTORY_CAP)})
  next_seq(node)
  redis.call('HSET', STATUS, node, NODE_STATUS.QUEUED)
  redis.call('ZADD', DELAYED, server_now() + retry, RUN_ID .. '|' .. node)
end

-- The run use_run points at has ended (`final`): if a node spawned it and still waits for it,
-- count it down there with its results or its error.
child_ended = function(final)
  local by = redis.call('HGET', RUN, 'spawned_by')
  if not by then return end
  local parent, node, token = string.match(by, '^([^|]+)|(.+)|(%d+)$')
  local child = RUN_ID
  local outcome = final == RUN_STATUS.SUCCEEDED and 'r' .. run_results()
                  or 'e' .. (final == RUN_STATUS.CANCELLED and 'was cancelled' or ('failed: ' .. (redis.call('HGET', RUN, 'error') or final)))
  use_run(parent)
  if redis.call('HGET', STATUS, node) == NODE_STATUS.WAITING and redis.call('HGET', ATTEMPTS, node) == token
     and redis.call('HEXISTS', SPAWNS, node .. '|left') == 1 and redis.call('HEXISTS', SPAWNS, child) == 0 then
    redis.call('HSET', SPAWNS, child, outcome)
    if redis.call('HINCRBY', SPAWNS, node .. '|left', -1) == 0 then children_done(node) end
  end
  use_run(child)
end

local function cancel_run(revoke)
  local rs = run_of().status
  if rs ~= RUN_STATUS.RUNNING and rs ~= RUN_STATUS.FAILING then return false end
  set_run('status', RUN_STATUS.CANCELLED, 'finished_at', NOW)
  count('runs|cancelled')
  local all = redis.call('HGETALL', STATUS)
  for i = 1, #all, 2 do
    local id, st = all[i], all[i + 1]
    local throttled = st == NODE_STATUS.QUEUED and redis.call('HEXISTS', THROTTLED, id) == 1  -- it has no message
    if st == NODE_STATUS.QUEUED then let_go(id, desc_of(id)) end  -- frees its limits, or stops its wait
    if parent_of(id) then
      if st == NODE_STATUS.QUEUED then set_status(id, NODE_STATUS.CANCELLED) end
    elseif st == NODE_STATUS.PENDING or st == NODE_STATUS.QUEUED or st == NODE_STATUS.WAITING
           or (st == NODE_STATUS.RUNNING and redis.call('HEXISTS', FANOUT, id) == 1) then
      if st == NODE_STATUS.WAITING then stop_waiting(id, revoke) end
      if st == NODE_STATUS.RUNNING then redis.call('HINCRBY', RUN, 'active', -1) end
      set_status(id, NODE_STATUS.CANCELLED)
      redis.call('HINCRBY', RUN, 'remaining', -1)
      record(id, NODE_STATUS.CANCELLED)
      if st == NODE_STATUS.QUEUED and not throttled then
        local seq = seq_of(id)
        revoke[#revoke + 1] = RUN_ID .. ':' .. id .. ':' .. (seq ~= '' and seq or '1')
      end
    end
  end
  record('', RUN_STATUS.CANCELLED)
  announce(RUN_STATUS.CANCELLED)
  ended()
  child_ended(RUN_STATUS.CANCELLED)
  return true
end

-- Waiting node will not go on (its run is cancelled or fails): it stops waiting, and a spawning
-- node's children, and theirs, are cancelled; their queued messages' task ids go into `revoke`.
stop_waiting = function(node, revoke)
  local w = desc_of(node).w
  if w then return unpark(node, w) end
  if redis.call('HEXISTS', SPAWNS, node .. '|left') == 0 then return end
  redis.call('HDEL', SPAWNS, unpack(spawn_fields(node)))  -- first: the children's ends count nothing here now
  redis.call('HINCRBY', FRONTIER, 'waiting|spawn', -1)
  local saved = RUN_ID
  for _, id in ipairs(cjson.decode(redis.call('HGET', CHILDREN, node))) do
    use_run(id)
    cancel_run(revoke)
  end
  use_run(saved)
end
