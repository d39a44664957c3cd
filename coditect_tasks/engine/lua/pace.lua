-- The pacer (worker/pacer.py): let go the waiters of the limits whose rate window has freed units
-- by now, and end the waiting nodes whose deadline has come (waits.lua's due), at most ARGV[3] of
-- each a call. Returns the seconds until the next is due (-1: none).
local now, limit = server_now(), tonumber(ARGV[3])
for _, entry in ipairs(redis.call('ZRANGEBYSCORE', LIMITS_DUE, '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', LIMITS_DUE, entry)
  local name, kv = string.match(entry, '^([^|]+)|(.*)$')
  if name then wake(name, kv, WAKE_BUDGET) end
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', WAITS_DUE, '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', WAITS_DUE, member)
  local run_id, node = string.match(member, '^([^|]+)|(.+)$')
  if run_id then
    use_run(run_id)
    pcall(due, node)  -- one run's broken state does not stop the others'
  end
end
local next_due
for _, set in ipairs({LIMITS_DUE, WAITS_DUE}) do
  local first = tonumber(redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')[2] or '')
  if first and (not next_due or first < next_due) then next_due = first end
end
if not next_due then return '-1' end
return tostring(math.max(0, next_due - server_now()))
