-- Node ARGV[3] failed for good in attempt ARGV[4] with error ARGV[5]: the run starts nothing new
-- and ends failed once its running nodes are done. A foreach item that fails for good fails its
-- node. Token 'task:<id>' means the attempt begun from the message with that task id (the
-- worker's main process after a hard time limit knows the message, not the token): a stale
-- attempt's message names no running attempt, so it fails nothing.
local node, token, err = ARGV[3], ARGV[4], ARGV[5]
if string.sub(token, 1, 5) == 'task:' then
  if redis.call('HGET', TASK, node) ~= string.sub(token, 6) then return 0 end
  token = redis.call('HGET', ATTEMPTS, node)
end
if not fenced(node, token) then return 0 end
local parent = parent_of(node)
if not parent then
  fail_node(node, token, err)
  return 1
end
local ptoken = redis.call('HGET', ATTEMPTS, parent)
settle(node, token, nil)
close_item(node, NODE_STATUS.FAILED)
redis.call('HSET', ERROR, node, err)
if fenced(parent, ptoken) then
  fail_node(parent, ptoken, 'item ' .. string.match(node, '#(%d+)$') .. ': ' .. err)
end
return 1
