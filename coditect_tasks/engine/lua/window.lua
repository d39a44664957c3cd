-- The heartbeats' view of the workers: ARGV[3..] are pairs (queue, its hand-off window, from the
-- slots of its live workers). Nodes waiting past a wider window go to it now; a queue no live
-- worker serves any more has no window (its messages go straight to it). Returns the nodes handed over.
local moved, seen = 0, {}
for i = 3, #ARGV - 1, 2 do
  local q, slots = ARGV[i], tonumber(ARGV[i + 1])  -- the window
  seen[q] = true
  redis.call('HSET', WINDOWS, q, slots)
  local room = slots - redis.call('LLEN', q)
  if room > 0 then moved = moved + refill(q, room) end
end
for _, q in ipairs(redis.call('HKEYS', WINDOWS)) do
  if not seen[q] then redis.call('HDEL', WINDOWS, q) end
end
-- a queue with nodes waiting past a window it no longer has: nothing bounds it now, so what waited
-- goes, a thousand a call (each heartbeat goes on), in the order it waited in
for _, q in ipairs(redis.call('SMEMBERS', READY_QUEUES)) do
  if redis.call('EXISTS', READY_PREFIX .. q) == 0 then
    redis.call('SREM', READY_QUEUES, q)
  elseif not seen[q] then
    moved = moved + refill(q, 1000)
  end
end
return moved
