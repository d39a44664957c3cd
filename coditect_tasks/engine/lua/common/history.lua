-- The history: every transition as an entry of the history stream, and live to who follows the run.

-- A transition: appended to the history stream, counted in the run's hash (events), and, when a
-- client follows the run (the event stream, `dag events`), published on its events channel as
-- '<stream id> <JSON>' without the result.
-- Whether a run's events channel has a subscriber, by channel: asked once a call (no client
-- subscribes while a script runs), where a slice of a fan-out records a thousand transitions.
local followed = {}
local function record(node, status, extra)
  if parent_of(node) then return end
  local args = {'XADD', HISTORY, 'MAXLEN', '~', HISTORY_MAX_ENTRIES, '*', 'run', RUN_ID, 'node', node,
                'status', status, 'at', NOW}
  if extra then
    for i = 1, #extra do args[#args + 1] = extra[i] end
  end
  local id = redis.call(unpack(args))
  local n = redis.call('HINCRBY', RUN, 'events', 1)  -- a follower that misses one sees the count skip
  local channel = P .. EVENTS_CHANNEL
  if followed[channel] == nil then followed[channel] = redis.call('PUBSUB', 'NUMSUB', channel)[2] > 0 end
  if not followed[channel] then return id end
  local event = {node = node, status = status, at = NOW, n = n}
  for i = 1, #(extra or {}), 2 do
    if extra[i] ~= 'result' then event[extra[i]] = extra[i + 1] end
  end
  redis.call('PUBLISH', channel, id .. ' ' .. cjson.encode(event))
  return id
end
