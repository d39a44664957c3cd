-- Start a run whose hashes the same transaction has just written. ARGV[3]: how many nodes a retry
-- reuses from its parent run (already succeeded), ARGV[4..]: those nodes, then the roots to queue
-- now (at most ROOT_SLICE; the rest wait in the run's UNPUSHED list, queued by roots.lua).
-- Idempotent: a retried submit whose first try got through changes nothing.
if redis.call('HGET', RUN, 'status') ~= 'submitting' then return 0 end
redis.call('HSET', RUN, 'status', 'running')
count('runs_submitted')
redis.call('HSET', RUN, 't0', server_now())
-- where the run's entries begin in the history stream: a follower reads from there (dag/events.py)
redis.call('HSET', RUN, 'first_event', record('', 'running'))
local reused = tonumber(ARGV[3])
for i = 4, 3 + reused do
  record(ARGV[i], 'succeeded', {'attempt', 0, 'result', string.sub(redis.call('HGET', RESULT, ARGV[i]), 1, HISTORY_CAP)})
end
for i = 4 + reused, #ARGV do enqueue(ARGV[i]) end
return #ARGV - 3 - reused
