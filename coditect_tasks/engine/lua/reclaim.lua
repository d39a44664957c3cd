-- Worker ARGV[3] is gone (no registration): queue again every node whose message it had
-- received but never begun, and return the outbox entries it held to the outbox. Only after ARGV[4] seconds since its first reservation, so a
-- worker that is still starting up is not mistaken for a dead one. Each node is handled on its
-- own (one run's broken state does not stop the others). Returns nodes requeued.
local host = ARGV[3]
local since = redis.call('ZSCORE', RESERVERS, host)
if not since or tonumber(since) > server_now() - tonumber(ARGV[4]) then return 0 end
local requeued = 0
local function reclaim(member)
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
for _, member in ipairs(redis.call('SMEMBERS', RESERVED_PREFIX .. host)) do
  pcall(reclaim, member)
end
-- outbox entries it was publishing when it died go back, to be published first (again: at least
-- once; a copy the broker had confirmed is dropped by take's checks)
while redis.call('LMOVE', OUTBOX_HELD_PREFIX .. host, OUTBOX, 'LEFT', 'RIGHT') do end
redis.call('DEL', RESERVED_PREFIX .. host)
redis.call('ZREM', RESERVERS, host)
return requeued
