-- Worker ARGV[3] drains the outbox: the ARGV[4] oldest entries it holds were confirmed by the
-- broker (drop them), then it takes up to ARGV[5] more, oldest first. Returns every entry it
-- holds, newest first: those taken now and any an earlier publish did not get through.
local held = OUTBOX_HELD_PREFIX .. ARGV[3]
local published = tonumber(ARGV[4])
if published > 0 then redis.call('LTRIM', held, 0, -published - 1) end
for _ = 1, tonumber(ARGV[5]) do
  if not redis.call('LMOVE', OUTBOX, held, 'RIGHT', 'LEFT') then break end
end
return redis.call('LRANGE', held, 0, -1)
