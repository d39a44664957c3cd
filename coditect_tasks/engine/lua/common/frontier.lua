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

-- Add `by` to the counts of hash's fields `fields` (a node's successors; a missing field counts 0);
-- returns the places in fields of those whose count is `at` now. A wide node's are read and
-- written a thousand a command (a thousand HINCRBYs took 2 ms, and a node with 10,000 successors
-- holds Redis for all of them), and those that reach 0 are deleted: a wide fan-out's successors
-- all do, and a thousand numbers written cost more than the names. One or two (a chain, a
-- diamond) take an HINCRBY each.
local function add_each(hash, fields, by, at)
  local hits = {}
  if #fields <= 2 then
    for i, field in ipairs(fields) do
      if redis.call('HINCRBY', hash, field, by) == at then hits[#hits + 1] = i end
    end
    return hits
  end
  for first = 1, #fields, 1000 do
    local last = math.min(first + 999, #fields)
    local counts, written, zero = redis.call('HMGET', hash, unpack(fields, first, last)), {}, {}
    for i = first, last do
      local value = (tonumber(counts[i - first + 1]) or 0) + by
      if value == 0 then
        zero[#zero + 1] = fields[i]
      else
        written[#written + 1], written[#written + 2] = fields[i], value
      end
      if value == at then hits[#hits + 1] = i end
    end
    if #written > 0 then redis.call('HSET', hash, unpack(written)) end
    if #zero > 0 then redis.call('HDEL', hash, unpack(zero)) end
  end
  return hits
end

-- The pending nodes among `nodes` with an agent (a waiting node calls none) count as upcoming
-- work for it. A wide node's successors are read and written a thousand a command, and each
-- agent's count moves once: a root of 10,000 successors took 140-170 ms to begin, a node at a time.
local function upcoming(nodes)
  if #nodes <= 2 or not packed() then
    for _, node in ipairs(nodes) do
      if redis.call('HGET', STATUS, node) == NODE_STATUS.PENDING then
        local d = desc_of(node)
        if d.q then tally(node, 'upcoming', d) end
      end
    end
    return
  end
  for first = 1, #nodes, 1000 do  -- a chunk at a time: only a chunk's reads are held at once
    local chunk = {unpack(nodes, first, math.min(first + 999, #nodes))}
    local statuses, pending = values_of(STATUS, chunk), {}
    for i, node in ipairs(chunk) do
      if statuses[i] == NODE_STATUS.PENDING then pending[#pending + 1] = node end
    end
    local agents, marks, changed, moved, phases, by = agents_of(pending), read_marks_of(pending), {}, {}, {}, {}
    for i, node in ipairs(pending) do
      local want, have = agents[i] and 'upcoming|' .. agents[i], marks[i][3]
      if want and want ~= have then
        if have ~= '' then by[have] = (by[have] or 0) - 1 end
        by[want] = (by[want] or 0) + 1
        changed[#changed + 1], moved[#moved + 1], phases[#phases + 1] = node, marks[i], want
      end
    end
    write_phases(changed, moved, phases)  -- with their counts, a chunk at a time, as tally keeps them
    for field, n in pairs(by) do
      if n ~= 0 then redis.call('HINCRBY', FRONTIER, field, n) end
    end
  end
end

-- Node (described by desc) began running: each pending successor waits on one predecessor fewer,
-- and one that waits on none now is upcoming.
local function started(desc)
  local freed = {}
  for _, i in ipairs(add_each(WAITING, desc.s, -1, 0)) do freed[#freed + 1] = desc.s[i] end
  upcoming(freed)
end

-- Node stopped running without succeeding (requeued, retried, rerouted, failed): its pending
-- successors wait on it again.
local function stopped(desc)
  for _, i in ipairs(add_each(WAITING, desc.s, 1, 1)) do tally(desc.s[i], nil) end
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
