-- Start a run whose hashes the same transaction has just written. ARGV[3..]: the roots to queue
-- now (at most ROOT_SLICE; the rest wait in the run's UNPUSHED list, queued by roots.lua).
-- Idempotent: a retried submit whose first try got through changes nothing.
if redis.call('HGET', RUN, 'status') ~= 'submitting' then return 0 end
redis.call('HSET', RUN, 'status', 'running')
count('runs_submitted')
redis.call('HSET', RUN, 't0', server_now())
record('', 'running')
for i = 3, #ARGV do enqueue(ARGV[i]) end
return #ARGV - 2
