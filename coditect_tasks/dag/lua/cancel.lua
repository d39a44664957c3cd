-- Cancel the run: it ends now; nodes not yet running become cancelled, and so do foreach nodes
-- that have fanned out (their running items finish, their queued ones never start). Returns
-- {1, task ids of queued node messages to revoke...} or {0, current status}.
local rs = redis.call('HGET', RUN, 'status')
if rs ~= 'running' and rs ~= 'failing' then return {0, rs or 'missing'} end
redis.call('HSET', RUN, 'status', 'cancelled', 'finished_at', NOW)
count('runs|cancelled')
local out = {1}
local all = redis.call('HGETALL', STATUS)
for i = 1, #all, 2 do
  local id, st = all[i], all[i + 1]
  if parent_of(id) then
    if st == 'queued' then set_status(id, 'cancelled') end
  elseif st == 'pending' or st == 'queued'
         or (st == 'running' and redis.call('HEXISTS', FANOUT, id) == 1) then
    if st == 'running' then redis.call('HINCRBY', RUN, 'running', -1) end
    set_status(id, 'cancelled')
    redis.call('HINCRBY', RUN, 'remaining', -1)
    record(id, 'cancelled')
    if st == 'queued' then
      out[#out + 1] = RUN_ID .. ':' .. id .. ':' .. (redis.call('HGET', SEQ, id) or '1')
    end
  end
end
record('', 'cancelled')
announce('cancelled')
ended()
return out
