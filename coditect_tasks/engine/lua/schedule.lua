-- Move a schedule on, compare-and-set, so that of the schedulers racing for one fire time exactly
-- one moves it (each may have submitted its run: the idempotency key of schedule and fire time made
-- that one run). ARGV[1]: the operation, ARGV[2]: the schedule.
--   advance: ARGV[3] the fire time it found next, ARGV[4] the one after, ARGV[5] when that one is
--     due (jitter in), ARGV[6] the run it started ('' none), ARGV[7] the fire time of that run,
--     ARGV[8] a fire time to hold back until the previous run ends ('' none; one at most).
--   unbuffer: ARGV[3] the fire time held back, ARGV[4] the run it started now.
-- Returns 1 if it moved the schedule, 0 if another scheduler had.
local op, name = ARGV[1], ARGV[2]
local state = SCHEDULE_PREFIX .. name
if op == 'advance' then
  if redis.call('HGET', state, 'next') ~= ARGV[3] then
    -- another scheduler moved it on, maybe judging the fire otherwise (the previous run ended in
    -- between): the run this one started is still the latest, if it is the newer
    if ARGV[6] ~= '' and tonumber(redis.call('HGET', state, 'last_fire') or '0') <= tonumber(ARGV[7]) then
      redis.call('HSET', state, 'last_run', ARGV[6], 'last_fire', ARGV[7])
    end
    return 0
  end
  redis.call('HSET', state, 'next', ARGV[4])
  if ARGV[6] ~= '' then redis.call('HSET', state, 'last_run', ARGV[6], 'last_fire', ARGV[7]) end
  if ARGV[8] ~= '' and redis.call('HSETNX', state, 'buffered', ARGV[8]) == 1 then
    redis.call('SADD', SCHEDULES_BUFFERED, name)
  end
  redis.call('ZADD', SCHEDULES_DUE, 'XX', ARGV[5], name)  -- XX: a paused or deleted one stays out
  return 1
end
if redis.call('HGET', state, 'buffered') ~= ARGV[3] then return 0 end
redis.call('HDEL', state, 'buffered')
redis.call('HSET', state, 'last_run', ARGV[4], 'last_fire', ARGV[3])
redis.call('SREM', SCHEDULES_BUFFERED, name)
return 1
