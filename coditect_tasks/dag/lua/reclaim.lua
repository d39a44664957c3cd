-- Worker ARGV[3] is gone (no registration): queue again every node whose message it had
-- received but never begun. Only after ARGV[4] seconds since its first reservation, so a
-- worker that is still starting up is not mistaken for a dead one. Returns nodes requeued.
local host = ARGV[3]
local since = redis.call('ZSCORE', RESERVERS, host)
if not since or tonumber(since) > server_now() - tonumber(ARGV[4]) then return 0 end
local set = RESERVED_PREFIX .. host
local requeued = 0
for _, member in ipairs(redis.call('SMEMBERS', set)) do
  local run_id, node = string.match(member, '^([^|]+)|([^|]+)$')
  if run_id then
    use_run(run_id)
    if queued_in_live_run(node) then
      requeue_lost(node, 'message lost with worker ' .. host .. ' before it began',
                   {'error', 'message lost with worker ' .. host})
      requeued = requeued + 1
    end
  end
end
redis.call('DEL', set)
redis.call('ZREM', RESERVERS, host)
return requeued
