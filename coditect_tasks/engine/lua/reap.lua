-- The engine's clock, run every second by every worker, across all runs, at most ARGV[3] of
-- each kind per call:
-- * queue the nodes whose retry delay is over (retry.lua);
-- * requeue running attempts whose lease expired (their worker died or is cut off);
-- * queue the next slice of roots of a run whose submitter stopped before queueing them all;
-- * check the messages the engine sent to each queue: one popped by a worker that died before it
--   even noted it (kombu's BRPOP is not reliable) is neither in its queue nor held by a live
--   worker; queue its node again. The engine numbers the messages it puts on each queue (header
--   ORDER_HEADER) and Redis lists are first in, first out, so the queue's oldest message tells
--   which were popped: a check reads only those, however long the backlog behind them.
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

-- The order of queue q's oldest message: every message of a lower order was popped. Infinite
-- if the queue is empty; nil if its oldest message is not the engine's (a plain call): cannot tell.
local function oldest_on(q)
  local tail = redis.call('LINDEX', q, -1)
  if not tail then return math.huge end
  local ok, envelope = pcall(cjson.decode, tail)
  return ok and type(envelope) == 'table' and type(envelope.headers) == 'table'
         and tonumber(envelope.headers[ORDER_HEADER]) or nil
end

-- Whether node's message has not been popped from its queue yet (a watch of the previous release).
local function not_yet_popped(node)
  local oldest = oldest_on(desc_of(node).q)
  if oldest == math.huge then return false end
  return not oldest or oldest <= order_of(node)
end

local now = server_now()
local last = tonumber(redis.call('GET', REAPED_AT) or '0')
redis.call('SET', REAPED_AT, tostring(now))
if now - last > REAP_GAP_SECONDS then
  for _, set in ipairs({LEASES, WATCHES, WATCHED}) do
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', now + LEASE_SECONDS)) do
      redis.call('ZADD', set, now + LEASE_SECONDS, member)
    end
  end
  redis.call('DEL', LOOKED)  -- a first look before the gap proves nothing: look again after it
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
    unwatch(node)  -- looked at again later, as the previous release's reaper does
    redis.call('ZADD', WATCHES, now + QUEUED_CHECK_SECONDS, RUN_ID .. '|' .. node .. '|q')
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

-- Check the messages sent to queue q that were popped, oldest first, at most `budget`: one whose
-- node still waits for it (queued, that very seq) and that no live worker noted is looked at again
-- LEASE_SECONDS later (its worker may be noting it right now), and if it still is, its node is
-- queued again. The rest were taken (or went stale) and leave the stream. Returns how many it read.
local function check_sent(q, budget)
  local stream, oldest = SENT_PREFIX .. q, oldest_on(q)
  if not oldest then
    redis.call('ZADD', WATCHED, now + QUEUED_CHECK_SECONDS, q)
    return 0
  end
  -- a message pushed during this check (a lost one queued again) is not judged by it
  local newest = tonumber(redis.call('HGET', PUSHED, q) or '0')
  local looked = redis.call('EXISTS', LOOKED) == 1
  local done, read, wait = {}, 0, QUEUED_CHECK_SECONDS
  local function judge(id, value)
    local run_id, node, seq, order = string.match(value or '', '^([^|]+)|([^|]+)|(%d+)|(%d+)$')
    -- this one and every later one are still queued
    if run_id and (tonumber(order) >= oldest or tonumber(order) > newest) then return false end
    read = read + 1
    local member = run_id and (run_id .. '|' .. node .. '|' .. seq)
    if run_id then use_run(run_id) end
    if not (run_id and queued_in_live_run(node) and seq_of(node) == seq) then
      done[#done + 1] = id
      if looked then redis.call('HDEL', LOOKED, member or '') end
    elseif noted_by_live_worker(node) then
      if looked then redis.call('HDEL', LOOKED, member) end
    else
      local since = tonumber(redis.call('HGET', LOOKED, member) or '')
      if not since then
        redis.call('HSET', LOOKED, member, now)
        looked, wait = true, math.min(wait, LEASE_SECONDS)
      elseif now - since >= LEASE_SECONDS then
        -- requeue_lost reads before it writes: a run whose state is broken is reported and dropped
        local ok, why = pcall(requeue_lost, node, 'message lost in transit; queued again',
                              {'error', 'message lost in transit'})
        redis.call('HDEL', LOOKED, member)
        done[#done + 1] = id
        why = type(why) == 'table' and why.err or why
        out[#out + 1] = ok and member or ('error|' .. member .. '|' .. tostring(why))
      else
        wait = math.min(wait, since + LEASE_SECONDS - now)
      end
    end
    return true
  end
  -- a page at a time: the first message still queued ends the check, however many wait behind it
  local from, reached = '-', false
  while not reached and read < budget do
    local want = math.min(100, budget - read)
    local page = redis.call('XRANGE', stream, from, '+', 'COUNT', want)
    for _, entry in ipairs(page) do
      local ok, judged = pcall(judge, entry[1], entry[2][2])
      if not ok then  -- judge reads before it writes: an entry of a run whose state is broken goes
        done[#done + 1] = entry[1]
        out[#out + 1] = 'error|' .. tostring(entry[2][2]) .. '|' .. tostring(type(judged) == 'table' and judged.err or judged)
      end
      reached = ok and not judged
      if reached then break end
    end
    if #page < want then break end
    from = '(' .. page[#page][1]
  end
  for first = 1, #done, 1000 do redis.call('XDEL', stream, unpack(done, first, math.min(first + 999, #done))) end
  if read == budget then wait = 0 end  -- more were popped than one call reads: the next reap goes on
  if redis.call('XLEN', stream) == 0 then
    redis.call('DEL', stream)
    redis.call('ZREM', WATCHED, q)
  else
    redis.call('ZADD', WATCHED, now + wait, q)
  end
  return read
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
-- a check costs a few microseconds: read ten times as many, so a wide fan-out's messages keep up
local budget = 10 * limit
for _, q in ipairs(redis.call('ZRANGEBYSCORE', WATCHED, '-inf', now, 'LIMIT', 0, limit)) do
  if budget <= 0 then break end
  local ok, read = pcall(check_sent, q, budget)
  if ok then
    budget = budget - read
  else  -- not one run's state: the queue is checked again later, reported now
    redis.call('ZADD', WATCHED, now + QUEUED_CHECK_SECONDS, q)
    out[#out + 1] = 'error|' .. q .. '|' .. tostring(type(read) == 'table' and read.err or read)
  end
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', WATCHES, '-inf', now, 'LIMIT', 0, 10 * limit)) do
  guarded(WATCHES, member, check_watch)
end
return out
