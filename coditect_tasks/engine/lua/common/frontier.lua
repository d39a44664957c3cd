-- The frontier and the metrics: where each node counts for autoscalers, and what the exporter reads.

-- The frontier an autoscaler reads (FRONTIER): a node counts once, under its agent, as demand
-- while queued, reserved or running (a fanned-out node's items count instead of it), or as
-- upcoming while pending with every unfinished predecessor running (WAITING is 0): work that
-- arrives within one node time. Its phase (marks.lua) remembers where a node counts, so a transition repeated
-- by a retried script never counts twice, and a rerouted node moves to its fallback's count.
local function tally(node, phase, desc)
  local have = phase_of(node)
  local want = phase and (phase .. '|' .. agent_of(desc or desc_of(node))) or false
  if have == want then return end
  if have then redis.call('HINCRBY', FRONTIER, have, -1) end
  if want then
    redis.call('HINCRBY', FRONTIER, want, 1)
  end
  set_phase(node, want)
end

-- Every node status is written here (the submit writes pending), so the frontier follows it. A
-- running node counts as demand until it fans out (a node whose desc has no foreach never does).
local function set_status(node, st, desc)
  redis.call('HSET', STATUS, node, st)
  local fanned = st == NODE_STATUS.RUNNING and (not desc or desc.x) and redis.call('HEXISTS', FANOUT, node) == 1
  if st == NODE_STATUS.QUEUED or (st == NODE_STATUS.RUNNING and not fanned) then
    tally(node, 'demand', desc)
  else
    tally(node, nil)
  end
end

-- Node (described by desc) began running: each pending successor waits on one predecessor fewer.
-- (A waiting node calls no agent: it is never upcoming work for one.)
local function started(desc)
  for _, succ in ipairs(desc.s) do
    if redis.call('HINCRBY', WAITING, succ, -1) == 0 and redis.call('HGET', STATUS, succ) == NODE_STATUS.PENDING then
      local d = desc_of(succ)
      if d.q then tally(succ, 'upcoming', d) end
    end
  end
end

-- Node stopped running without succeeding (requeued, retried, rerouted, failed): its pending
-- successors wait on it again.
local function stopped(desc)
  for _, succ in ipairs(desc.s) do
    if redis.call('HINCRBY', WAITING, succ, 1) == 1 then tally(succ, nil) end
  end
end

-- Observe the seconds since t0 (a server_now() reading) in a histogram: one count in
-- field `buckets|<le>` for the first bound that holds it, the seconds added to field `sum`.
local function observe(buckets, sum, t0)
  if not t0 then return end
  local seconds = server_now() - tonumber(t0)
  local le = '+Inf'
  for _, bound in ipairs(DURATION_BUCKETS) do
    if seconds <= bound then le = tostring(bound) break end
  end
  count(buckets .. '|' .. le)
  redis.call('HINCRBYFLOAT', METRICS, sum, seconds)
end

-- An attempt of node by agent ended (succeeded, failed, retried, rerouted): count it and
-- observe how long it ran.
local function observe_end(node, agent, outcome)
  count('nodes|' .. agent .. '|' .. outcome)
  observe('duration|' .. agent, 'duration_sum|' .. agent, redis.call('HGET', T0, node))
end
