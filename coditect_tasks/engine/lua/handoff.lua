-- Worker ARGV[4] is shutting down and its grace is over: node ARGV[3], whose running attempt began
-- from message ARGV[5], goes back to its queue now, so another pool starts it within seconds
-- instead of after its lease expires. In a run that starts nothing new the node is skipped.
-- Returns 1, or 0 if that message's attempt no longer runs the node (it finished, or is stale).
local node, worker, task_id = ARGV[3], ARGV[4], ARGV[5]
if redis.call('HGET', TASK, node) ~= task_id then return 0 end
local token = redis.call('HGET', ATTEMPTS, node)
if not fenced(node, token) or redis.call('HEXISTS', FANOUT, node) == 1 then return 0 end
if redis.call('HGET', RUN, 'status') == RUN_STATUS.RUNNING then
  requeue(node, token, 'handed off: worker ' .. worker .. ' shut down before the attempt ended')
elseif settle(node, token, nil) then
  skip_settled(node)
end
return 1
