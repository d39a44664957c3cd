-- Start a run whose hashes the same transaction has just written. ARGV[4..]: the roots.
redis.call('HSET', RUN, 'status', 'running')
record('', 'running')
for i = 4, #ARGV do enqueue(ARGV[i]) end
return #ARGV - 3
