-- A cheap look at one cell's clock, so that a cell with nothing due costs no full script (reap.lua,
-- pace.lua: tens of microseconds each, on every cell every second). ARGV[3] 'reap': 1 if reap.lua
-- has work (a retry, lease, watched queue or stalled submit due, or a gap since the last reap that
-- it must judge as an outage); else the reap is noted as reap.lua notes it, and 0. 'pace': the
-- seconds until pace.lua has work (0: now; -1: nothing waits).
local now = server_now()
local function first(set)
  return tonumber(redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')[2] or '')
end
if ARGV[3] == 'pace' then
  local next_due
  for _, set in ipairs({LIMITS_DUE, WAITS_DUE}) do
    local due = first(set)
    if due and (not next_due or due < next_due) then next_due = due end
  end
  if not next_due then return '-1' end
  return tostring(math.max(0, next_due - now))
end
if now - tonumber(redis.call('GET', REAPED_AT) or '0') > REAP_GAP_SECONDS then return 1 end
for _, set in ipairs({SUBMITTING, DELAYED, LEASES, WATCHES, WATCHED}) do
  local due = first(set)
  if due and due <= now then return 1 end
end
redis.call('SET', REAPED_AT, tostring(now))
return 0
