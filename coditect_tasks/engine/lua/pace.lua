-- The pacer (worker/pacer.py): let go the waiters of the limits whose rate window has freed units
-- by now, at most ARGV[3] limits a call. Returns the seconds until the next is due (-1: none).
local now = server_now()
for _, due in ipairs(redis.call('ZRANGEBYSCORE', LIMITS_DUE, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))) do
  redis.call('ZREM', LIMITS_DUE, due)
  local name, kv = string.match(due, '^([^|]+)|(.*)$')
  if name then wake(name, kv, WAKE_BUDGET) end
end
local first = redis.call('ZRANGE', LIMITS_DUE, 0, 0, 'WITHSCORES')
if not first[2] then return '-1' end
return tostring(math.max(0, tonumber(first[2]) - server_now()))
