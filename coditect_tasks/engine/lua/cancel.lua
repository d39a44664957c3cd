-- Cancel the run: it ends now; nodes not yet running become cancelled, and so do foreach nodes
-- that have fanned out (their running items finish, their queued ones never start). Returns as
-- JSON {ok = 1, queued = the task ids of queued node messages to revoke} or {ok = 0, status}.
local rs = redis.call('HGET', RUN, 'status')
if rs ~= RUN_STATUS.RUNNING and rs ~= RUN_STATUS.FAILING then return cjson.encode({ok = 0, status = rs or 'missing'}) end
redis.call('HSET', RUN, 'status', RUN_STATUS.CANCELLED, 'finished_at', NOW)
count('runs|cancelled')
local queued = {}
local all = redis.call('HGETALL', STATUS)
for i = 1, #all, 2 do
  local id, st = all[i], all[i + 1]
  local throttled = st == NODE_STATUS.QUEUED and redis.call('HEXISTS', THROTTLED, id) == 1  -- it has no message
  if st == NODE_STATUS.QUEUED then let_go(id, desc_of(id)) end  -- frees its limits, or stops its wait
  if parent_of(id) then
    if st == NODE_STATUS.QUEUED then set_status(id, NODE_STATUS.CANCELLED) end
  elseif st == NODE_STATUS.PENDING or st == NODE_STATUS.QUEUED or st == NODE_STATUS.WAITING
         or (st == NODE_STATUS.RUNNING and redis.call('HEXISTS', FANOUT, id) == 1) then
    if st == NODE_STATUS.WAITING then unpark(id, desc_of(id).w) end
    if st == NODE_STATUS.RUNNING then redis.call('HINCRBY', RUN, 'active', -1) end
    set_status(id, NODE_STATUS.CANCELLED)
    redis.call('HINCRBY', RUN, 'remaining', -1)
    record(id, NODE_STATUS.CANCELLED)
    if st == NODE_STATUS.QUEUED and not throttled then
      queued[#queued + 1] = RUN_ID .. ':' .. id .. ':' .. (redis.call('HGET', SEQ, id) or '1')
    end
  end
end
record('', RUN_STATUS.CANCELLED)
announce(RUN_STATUS.CANCELLED)
ended()
return cjson.encode({ok = 1, queued = queued})
