-- Foreach node ARGV[3] (attempt ARGV[4]) fans out over its items ARGV[6..] (each as JSON, at
-- least one); ARGV[5] is the node's record without its literal items, what each item begins with.
-- Item k is the pseudo-node '<node>#k', queued as a message of its own, with its own seq, lease
-- and retries, so a backlog only delays it and a lost one is queued again alone. The node's own
-- lease ends here: its items hold it, and the last one completes it (complete.lua). In a run that
-- starts nothing new, the node is skipped instead. Returns 1, or 0 if the attempt is stale, the
-- node has fanned out already, or the run no longer starts nodes.
local node, token = ARGV[3], ARGV[4]
if not fenced(node, token) or redis.call('HEXISTS', FANOUT, node) == 1 then return 0 end
if redis.call('HGET', RUN, 'status') ~= RUN_STATUS.RUNNING then
  settle(node, token, nil)
  skip_settled(node)
  return 0
end
local n = #ARGV - 5
local first = ready(node .. '#0')
release(node, token)
let_go(node, first.desc, true)  -- its items take the node's limits, each for itself
redis.call('HSET', FANOUT, node, n, node .. '|done', 0, node .. '|open', n, node .. '|bytes', 0)
tally(node, nil)  -- its items are the work now
redis.call('HSET', ITEMS, node .. '|record', ARGV[5])
for k = 0, n - 1 do
  local item = node .. '#' .. k
  redis.call('HSET', ITEMS, item, ARGV[6 + k])
  push({node = item, desc = first.desc, parts = first.parts})
end
return 1
