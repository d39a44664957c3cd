-- A node's marks: seq numbers its messages (only the newest may begin it), order is its newest
-- message's place among those the engine put on its queue (PUSHED), phase the FRONTIER field it
-- counts in. A run keeps them packed in one field of its NODE hash, '~<node>' → '<seq>,<order>,<phase>'
-- (node ids hold no '~'), where a hash each cost three fields a node and three keys a small run.
-- A run written by the previous release (its NODE hash has no '#' field) keeps the hashes SEQ,
-- ORDER and PHASE.
local marks_run, marks_packed
local function packed()
  if marks_run ~= RUN_ID then marks_run, marks_packed = RUN_ID, redis.call('HEXISTS', NODE, '#') == 1 end
  return marks_packed
end

-- A packed field's seq (a number), order and phase ('' where none).
local function unpacked(value)
  local seq, order, phase = string.match(value or ',,', '^(%d*),(%d*),(.*)$')
  return tonumber(seq) or 0, order or '', phase or ''
end

-- Marks read or written in this call, by run and node: a dispatch or a take reads them three times.
local marks_seen = {}
local function read_marks(node)
  local key = RUN_ID .. '|' .. node
  local seen = marks_seen[key]
  if seen then return seen[1], seen[2], seen[3] end
  local seq, order, phase = unpacked(redis.call('HGET', NODE, '~' .. node))
  marks_seen[key] = {seq, order, phase}
  return seq, order, phase
end

local function write_marks(node, seq, order, phase)
  marks_seen[RUN_ID .. '|' .. node] = {seq, order, phase}
  if seq == 0 and order == '' and phase == '' then
    redis.call('HDEL', NODE, '~' .. node)
  else
    redis.call('HSET', NODE, '~' .. node, seq .. ',' .. order .. ',' .. phase)
  end
end

-- read_marks for many nodes of the run (a wide node's successors), a thousand a command: a list of
-- {seq, order, phase}, in the order of nodes. Redis holds them as written (write_marks writes
-- through), and they are not kept for the call (see agents_of).
local function read_marks_of(nodes)
  local out = {}
  for first = 1, #nodes, 1000 do
    local last, fields = math.min(first + 999, #nodes), {}
    for i = first, last do fields[#fields + 1] = '~' .. nodes[i] end
    local got = redis.call('HMGET', NODE, unpack(fields))
    for i = first, last do out[i] = {unpacked(got[i - first + 1])} end
  end
  return out
end

-- Give many nodes of the run (marks: what read_marks_of read) a phase each (phases[i], never
-- empty), a thousand a command.
local function write_phases(nodes, marks, phases)
  local fields = {}
  for i, node in ipairs(nodes) do
    local seq, order = marks[i][1], marks[i][2]
    marks_seen[RUN_ID .. '|' .. node] = nil
    fields[#fields + 1], fields[#fields + 2] = '~' .. node, seq .. ',' .. order .. ',' .. phases[i]
  end
  for first = 1, #fields, 2000 do redis.call('HSET', NODE, unpack(fields, first, math.min(first + 1999, #fields))) end
end

-- The seq of node's newest message ('' before its first).
local function seq_of(node)
  if not packed() then return redis.call('HGET', SEQ, node) or '' end
  local seq = read_marks(node)
  return seq > 0 and tostring(seq) or ''
end

-- Number node's next message (every message out for it before is stale from here), placed `order`
-- on its queue if it is pushed there now. Returns its seq.
local function next_seq(node, order)
  if not packed() then
    if order then redis.call('HSET', ORDER, node, order) end
    return redis.call('HINCRBY', SEQ, node, 1)
  end
  local seq, was, phase = read_marks(node)
  write_marks(node, seq + 1, order and tostring(order) or was, phase)
  return seq + 1
end

-- The place of node's newest message on its queue (0 if none).
local function order_of(node)
  if not packed() then return tonumber(redis.call('HGET', ORDER, node) or '0') end
  local _, order = read_marks(node)
  return tonumber(order) or 0
end

-- The FRONTIER field node counts in, or false.
local function phase_of(node)
  if not packed() then return redis.call('HGET', PHASE, node) end
  local _, _, phase = read_marks(node)
  return phase ~= '' and phase
end

local function set_phase(node, phase)
  if not packed() then
    if phase then redis.call('HSET', PHASE, node, phase) else redis.call('HDEL', PHASE, node) end
    return
  end
  local seq, order = read_marks(node)
  write_marks(node, seq, order, phase or '')
end

-- The run's nodes `nodes` are done with (a foreach node's items, once it has their results): their
-- marks go, 1,000 fields per command.
local function forget_marks(nodes)
  local fields, hashes = {}, {SEQ, ORDER}
  if packed() then
    for i, node in ipairs(nodes) do
      fields[i] = '~' .. node
      marks_seen[RUN_ID .. '|' .. node] = nil
    end
    hashes = {NODE}
  else
    fields = nodes
  end
  for _, hash in ipairs(hashes) do
    for first = 1, #fields, 1000 do redis.call('HDEL', hash, unpack(fields, first, math.min(first + 999, #fields))) end
  end
end

-- Take every node of the run out of the FRONTIER field it counts in (the run has ended; a node
-- that still runs must not count once it is forgotten).
local function uncount_phases()
  if not packed() then
    for _, field in ipairs(redis.call('HVALS', PHASE)) do redis.call('HINCRBY', FRONTIER, field, -1) end
    redis.call('DEL', PHASE)
    return
  end
  local flat = redis.call('HGETALL', NODE)  -- one call, however many nodes
  for k = 1, #flat, 2 do
    if string.sub(flat[k], 1, 1) == '~' then
      local seq, order, phase = unpacked(flat[k + 1])
      if phase ~= '' then
        redis.call('HINCRBY', FRONTIER, phase, -1)
        write_marks(string.sub(flat[k], 2), seq, order, '')
      end
    end
  end
end

-- The id of the run's message template `key` ('<agent>|<timeout>') in TEMPLATES, or nil.
local function template_of(key)
  return redis.call('HGET', NODE, '#' .. key) or redis.call('HGET', TPLS, key)
end
