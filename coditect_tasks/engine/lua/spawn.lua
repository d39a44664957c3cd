-- Attempt ARGV[4] of node ARGV[3] ended by spawning child runs: ARGV[5] is their writes as JSON
-- (a list of {id, run, hashes, roots, later}: engine/submission.py's RunWrite), ARGV[6] '1' when
-- the agent gave one DAG (the node's result is then its results alone, not a list), ARGV[7] the
-- seconds before the node's next attempt should a child fail (-1: the node fails), ARGV[8..9]
-- the most levels of spawning below a root run and the most nodes in a root run's whole tree.
-- In this one script: the attempt ends, the children are written and started, and the node waits
-- for them holding no worker. So a crash or a retried attempt never makes a second set. A spawn
-- past a limit fails the node, naming the limit; in a run that starts nothing new (cancelled,
-- failing) the node is skipped and nothing starts. Returns 1, or 0 if the attempt is stale or the
-- run starts nothing; a repeated call (its reply lost) answers 1 and changes nothing.
local node, token, one, retry = ARGV[3], ARGV[4], ARGV[6], ARGV[7]
local max_depth, max_nodes = tonumber(ARGV[8]), tonumber(ARGV[9])
if redis.call('HGET', STATUS, node) == NODE_STATUS.WAITING and redis.call('HGET', ATTEMPTS, node) == token then return 1 end
if not fenced(node, token) then return 0 end
if redis.call('HGET', RUN, 'status') ~= RUN_STATUS.RUNNING then  -- cancelled or failing: it starts nothing
  settle(node, token, nil)
  skip_settled(node)
  return 0
end
local children = cjson.decode(ARGV[5])
local depth = tonumber(redis.call('HGET', RUN, 'depth') or '0') + 1
local root = redis.call('HGET', RUN, 'root') or RUN_ID
if depth > max_depth then
  fail_node(node, token, 'spawn would be ' .. depth .. ' levels below run ' .. root .. ', over the limit of '
            .. max_depth .. ' (CODITECT_SPAWN_MAX_DEPTH)')
  return 1
end
local adding = 0
for _, child in ipairs(children) do adding = adding + tonumber(child.run.total) end
local root_run = RUN_KEY_PREFIX .. root .. ':run'
local tree = tonumber(redis.call('HGET', root_run, 'tree') or redis.call('HGET', root_run, 'total') or '0')
if tree + adding > max_nodes then
  fail_node(node, token, 'spawn of ' .. adding .. ' node(s) would make ' .. (tree + adding) .. ' in the tree of run '
            .. root .. ', over the limit of ' .. max_nodes .. ' (CODITECT_SPAWN_MAX_NODES)')
  return 1
end
redis.call('HSET', root_run, 'tree', tree + adding)

settle(node, token, 'spawned')
set_status(node, NODE_STATUS.WAITING)
redis.call('HINCRBY', FRONTIER, 'waiting|spawn', 1)
local parent, ids, stamp = RUN_ID, {}, server_now()
for i, child in ipairs(children) do ids[i] = child.id end
-- the node waits for them before they start: a child may end at once (a wait its event satisfies)
redis.call('HSET', CHILDREN, node, cjson.encode(ids))
redis.call('HSET', SPAWNS, node .. '|left', #ids, node .. '|retry', retry, node .. '|one', one, node .. '|nodes', adding)
record(node, NODE_STATUS.WAITING, {'attempt', token, 'detail', cjson.encode({kind = 'spawn', children = ids})})
for _, child in ipairs(children) do
  for id, text in pairs(child.templates or {}) do redis.call('HSETNX', TEMPLATES, id, text) end
  use_run(child.id)
  for suffix, fields in pairs(child.hashes) do
    local flat = {}
    for field, value in pairs(fields) do flat[#flat + 1] = field; flat[#flat + 1] = value end
    for first = 1, #flat, 1000 do redis.call('HSET', P .. suffix, unpack(flat, first, math.min(first + 999, #flat))) end
  end
  local run = {}
  for field, value in pairs(child.run) do run[#run + 1] = field; run[#run + 1] = value end
  set_run(unpack(run))
  redis.call('HSET', RUN, 'parent', parent, 'parent_node', node, 'root', root, 'depth', depth,
             'spawned_by', parent .. '|' .. node .. '|' .. token)
  redis.call('ZADD', RUNS, stamp, RUN_ID)
  if #child.later > 0 then
    redis.call('RPUSH', UNPUSHED, unpack(child.later))
    redis.call('ZADD', SUBMITTING, stamp, RUN_ID)  -- the reaper queues the rest of its roots
  end
  start_run()
  for _, r in ipairs(child.roots) do enqueue(r) end
end
use_run(parent)
return 1
