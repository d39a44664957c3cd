-- Cancel the run: it ends now; nodes not yet running become cancelled. Returns
-- {1, task ids of queued messages to revoke...} or {0, current status}.
local rs = redis.call('HGET', RUN, 'status')
if rs ~= 'running' and rs ~= 'failing' then return {0, rs or 'missing'} end
redis.call('HSET', RUN, 'status', 'cancelled', 'finished_at', NOW)
count('runs|cancelled')
local out = {1}
local all = redis.call('HGETALL', STATUS)
for i = 1, #all, 2 do
  local st = all[i + 1]
  if st == 'pending' or st == 'queued' then
    redis.call('HSET', STATUS, all[i], 'cancelled')
    redis.call('HINCRBY', RUN, 'remaining', -1)
    record(all[i], 'cancelled')
    if st == 'queued' then
      out[#out + 1] = RUN_ID .. ':' .. all[i] .. ':' .. (redis.call('HGET', SEQ, all[i]) or '1')
    end
  end
end
record('', 'cancelled')
announce('cancelled')
ended()
return out
