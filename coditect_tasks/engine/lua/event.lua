-- Event ARGV[3] with key ARGV[4] and data ARGV[5] (JSON), id ARGV[6]: every node waiting for that
-- name and key succeeds with the data, now; and the event is kept EVENT_RETENTION_SECONDS for the
-- waits that begin later within their lookback. Only the same name and the same key match.
-- Returns how many waiting nodes it resolved.
local ek = ARGV[3] .. '|' .. ARGV[4]
local log, data = EVENTS_PREFIX .. ek, EVENTS_PREFIX .. ek .. '|data'
local now = server_now()
local old = redis.call('ZRANGEBYSCORE', log, '-inf', now - EVENT_RETENTION_SECONDS)
for _, id in ipairs(old) do redis.call('HDEL', data, id) end
redis.call('ZREMRANGEBYSCORE', log, '-inf', now - EVENT_RETENTION_SECONDS)
redis.call('ZADD', log, now, ARGV[6])
redis.call('HSET', data, ARGV[6], ARGV[5])
redis.call('EXPIRE', log, EVENT_RETENTION_SECONDS)
redis.call('EXPIRE', data, EVENT_RETENTION_SECONDS)
local resolved = 0
for _, member in ipairs(redis.call('SMEMBERS', WAITERS_PREFIX .. ek)) do
  local run_id, node = string.match(member, '^([^|]+)|(.+)$')
  if run_id then
    use_run(run_id)
    if redis.call('HGET', AWAITS, node) == ek and resolve_wait(node, ARGV[5]) then resolved = resolved + 1 end
  end
end
redis.call('DEL', WAITERS_PREFIX .. ek)
return resolved
