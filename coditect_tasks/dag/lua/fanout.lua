-- Foreach node ARGV[3] (attempt ARGV[4]) fans out over its items ARGV[5..] (each as JSON, at
-- least one): item k is the pseudo-node '<node>#k', queued as a message of its own, with its own
-- seq, lease and retries, so a backlog only delays it and a lost one is queued again alone. The
-- node's own lease ends here: its items hold it, and the last one completes it (complete.lua).
-- Returns 1, or 0 if the attempt is stale or the node has fanned out already.
local node, token = ARGV[3], ARGV[4]
if not fenced(node, token) or redis.call('HEXISTS', FANOUT, node) == 1 then return 0 end
local n = #ARGV - 4
local first = ready(node .. '#0')
release(node, token)
redis.call('HSET', FANOUT, node, n, node .. '|done', 0, node .. '|open', n)
for k = 0, n - 1 do
  local item = node .. '#' .. k
  redis.call('HSET', ITEMS, item, ARGV[5 + k])
  push({node = item, desc = first.desc, tpl = first.tpl})
end
return 1
