-- Worker ARGV[3] has received (reserved) the messages of nodes ARGV[4..] ("run|node" each) but
-- not begun them. If that worker dies before they begin, reclaim.lua queues them again.
redis.call('SADD', RESERVED_PREFIX .. ARGV[3], unpack(ARGV, 4))
redis.call('ZADD', RESERVERS, 'NX', server_now(), ARGV[3])
return 1
