-- The engine's clock, run every second by every worker, across all runs, at most ARGV[3] of
-- each kind per call:
-- * queue the nodes whose retry delay is over (retry.lua);
-- * requeue running attempts whose lease expired (their worker died or is cut off);
-- * queue the next slice of roots of a run whose submitter stopped before queueing them all;
-- * check nodes queued for a while: a message popped by a worker that died before it even noted
--   the message (kombu's BRPOP is not reliable) is neither in its queue nor held by a live worker;
--   queue it again. The check costs the same whatever the backlog: the engine numbers the
--   messages it puts on each queue (header ORDER_HEADER), and Redis lists are first in, first
--   out, so the oldest message of the queue tells whether this node's message was popped yet.
-- Returns the "run|node|attempt" (or "run|node|l") requeued, or {'outage'}: when no reaper has
-- reached Redis for REAP_GAP_SECONDS (Redis stalled or restarted, or every worker was cut off),
-- no lease holder could renew either, so every lease due within one lease length gets that
-- length from now, and nothing is judged until then.
local limit = tonumber(ARGV[3])

local function noted_by_live_worker(node)
  local member = RUN_ID .. '|' .. node
  for _, host in ipairs(redis.call('ZRANGE', RESERVERS, 0, -1)) do
    if redis.call('SISMEMBER', RESERVED_PREFIX .. host, member) == 1
       and redis.call('EXISTS', WORKER_PREFIX .. host) == 1 then
      return true
    end
  end
  return false
end

-- Whether node's message has not been popped from its queue yet.
local function not_yet_popped(node)
  local tail = redis.call('LINDEX', desc_of(node).q, -1)
  if not tail then return false end
  local ok, envelope = pcall(cjson.decode, tail)
  local oldest = ok and type(envelope) == 'table' and type(envelope.headers) == 'table'
                 and tonumber(envelope.headers[ORDER_HEADER])
  -- the oldest message is not the engine's (a plain call): cannot tell yet, look again later
  if not oldest then return true end
  return oldest <= order_of(node)
end

local now = server_now()
local last = tonumber(redis.call('GET', REAPED_AT) or '0')
redis.call('SET', REAPED_AT, tostring(now))
if now - last > REAP_GAP_SECONDS then
  for _, set in ipairs({LEASES, WATCHES}) do
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', now + LEASE_SECONDS)) do
      redis.call('ZADD', set, now + LEASE_SECONDS, member)
    end
  end
  return {'outage'}
end

-- One run's broken state (its hashes removed by hand) must not stop the reaper for every run:
-- each member is handled on its own, reading before it writes, and one that fails is dropped
-- and reported as "error|<member>|<why>".
local out = {}
local function guarded(key, member, handle)
  local ok, why = pcall(handle, member)
  if not ok then
    redis.call('ZREM', key, member)
    out[#out + 1] = 'error|' .. member .. '|' .. tostring(type(why) == 'table' and why.err or why)
  end
end

local function promote(member)
  local run_id, node = string.match(member, '^([^|]+)|([^|]+)$')
  if run_id then
    use_run(run_id)
    if queued_in_live_run(node) then enqueue(node) end
  end
  redis.call('ZREM', DELAYED, member)
end

-- A queued node's watch is due: is its message still on its way?
local function check_watch(member)
  local run_id, node, look = string.match(member, '^([^|]+)|([^|]+)|([ql])$')
  if run_id then use_run(run_id) end
  if not (run_id and queued_in_live_run(node)) then
    redis.call('ZREM', WATCHES, member)
  elseif noted_by_live_worker(node) or not_yet_popped(node) then
    unwatch(node)
    watch(node, QUEUED_CHECK_SECONDS)
  elseif look == 'q' then
    -- popped but not noted: its worker may be noting it right now; look once more shortly
    redis.call('ZREM', WATCHES, member)
    redis.call('ZADD', WATCHES, now + LEASE_SECONDS, RUN_ID .. '|' .. node .. '|l')
  else
    requeue_lost(node, 'message lost in transit; queued again', {'error', 'message lost in transit'})
    redis.call('ZREM', WATCHES, member)
    out[#out + 1] = member
  end
end

-- A running attempt's lease expired: its worker died or is cut off.
local function check_lease(member)
  local run_id, node, token = string.match(member, '^([^|]+)|([^|]+)|([^|]+)$')
  if run_id then use_run(run_id) end
  if not (run_id and fenced(node, token)) then
    redis.call('ZREM', LEASES, member)
  elseif redis.call('HGET', RUN, 'status') == RUN_STATUS.RUNNING then
    requeue(node, token, 'lease expired: attempt ' .. token .. ' lost its worker')
    out[#out + 1] = member
  else
    -- the run starts nothing new: the lost attempt ends the node
    if settle(node, token, nil) then skip_settled(node) end
    out[#out + 1] = member
  end
end

-- a submit that stopped queueing its roots (its process died): one slice a run, one run a call,
-- the next slice on the next call
for _, run in ipairs(redis.call('ZRANGEBYSCORE', SUBMITTING, '-inf', now, 'LIMIT', 0, 1)) do
  guarded(SUBMITTING, run, function(r) use_run(r) push_roots(0) end)
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', DELAYED, '-inf', now, 'LIMIT', 0, limit)) do
  guarded(DELAYED, member, promote)
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, limit)) do
  guarded(LEASES, member, check_lease)
end
-- a check costs tens of microseconds: take ten times as many, so a wide fan-out's watches keep up
for _, member in ipairs(redis.call('ZRANGEBYSCORE', WATCHES, '-inf', now, 'LIMIT', 0, 10 * limit)) do
  guarded(WATCHES, member, check_watch)
end
return out
