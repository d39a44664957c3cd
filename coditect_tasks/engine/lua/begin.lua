-- A worker takes node ARGV[3] (worker name ARGV[4]) from the message with task id ARGV[5];
-- ARGV[6], if not empty, is the key prefix of the agent's circuit breaker. Returns take's named reply (common.lua) as JSON.
return cjson.encode(take(ARGV[3], ARGV[4], ARGV[5], ARGV[6]))
