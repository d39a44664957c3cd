-- Worker ARGV[3] drains the outbox: the ARGV[4] oldest entries it holds were confirmed by the
-- broker (drop them), then it takes more, oldest first, until it holds ARGV[5]. Returns every
-- entry it holds, newest first: those taken now and any an earlier publish did not get through.
-- Not repeated after a lost reply (a repeat would drop entries taken since): the caller publishes
-- what it holds again instead. A worker holding entries is listed with the reservers, so that
-- reclaim.lua returns them to the outbox if it dies.
local held = OUTBOX_HELD_PREFIX .. ARGV[3]
local published = tonumber(ARGV[4])
if published > 0 then redis.call('LTRIM', held, 0, -published - 1) end
for _ = redis.call('LLEN', held) + 1, tonumber(ARGV[5]) do
  if not redis.call('LMOVE', OUTBOX, held, 'RIGHT', 'LEFT') then break end
end
local entries = redis.call('LRANGE', held, 0, -1)
if #entries > 0 then redis.call('ZADD', RESERVERS, 'NX', server_now(), ARGV[3]) end
return entries
