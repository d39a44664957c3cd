-- Worker ARGV[3] has received (reserved) node messages but not begun them: ARGV[5..] are triples
-- (run id, node, the message's task id). The worker's notes thread writes them, so a note may come
-- late: it is kept only while the worker's notes are of epoch ARGV[4] (a restarted consumer forgets
-- its notes and starts a new epoch: heartbeat.py) and while the node is still queued for that very
-- message (not begun, which would leave the note behind for good, and not queued again since).
-- If that worker dies before they begin, reclaim.lua queues them again. Returns the notes kept.
local host, set = ARGV[3], RESERVED_PREFIX .. ARGV[3]
if redis.call('SISMEMBER', set, '@epoch:' .. ARGV[4]) == 0 then return 0 end
local kept = 0
for i = 5, #ARGV - 2, 3 do
  local run_id, node, task_id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  use_run(run_id)
  if redis.call('HGET', STATUS, node) == NODE_STATUS.QUEUED
     and string.match(task_id, ':(%d+)$') == seq_of(node) then
    redis.call('SADD', set, run_id .. '|' .. node)
    kept = kept + 1
  end
end
if kept > 0 then redis.call('ZADD', RESERVERS, 'NX', server_now(), host) end
return kept
