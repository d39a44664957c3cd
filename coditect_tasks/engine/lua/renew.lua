-- Attempt ARGV[4] of node ARGV[3] is still at work: extend its lease by ARGV[5] seconds.
-- Returns 0 if that attempt no longer owns the node (it should stop).
local node, token = ARGV[3], ARGV[4]
if not fenced(node, token) then return 0 end
redis.call('ZADD', LEASES, 'XX', server_now() + tonumber(ARGV[5]), lease_member(node, token))
return 1
