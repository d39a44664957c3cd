-- The history: every transition as an entry of the history stream, and live to who follows the run.

-- A transition: appended to the history stream, counted in the run's hash (events), and, when a
-- client follows the run (the event stream, `dag events`), published on its events channel as
-- '<stream id> <JSON>' without the result.
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
  if redis.call('PUBSUB', 'NUMSUB', channel)[2] == 0 then return id end
  local event = {node = node, status = status, at = NOW, n = n}
  for i = 1, #(extra or {}), 2 do
    if extra[i] ~= 'result' then event[extra[i]] = extra[i + 1] end
  end
  redis.call('PUBLISH', channel, id .. ' ' .. cjson.encode(event))
  return id
end
