-- Worker ARGV[4] has received (reserved) the message of node ARGV[3] but not begun it.
-- If that worker dies before it begins, reclaim.lua queues the node again.
redis.call('SADD', RESERVED_PREFIX .. ARGV[4], RUN_ID .. '|' .. ARGV[3])
redis.call('ZADD', RESERVERS, 'NX', server_now(), ARGV[4])
return 1
