-- The recorder has written the history of finished run ARGV[1]: its live state expires in
-- ARGV[3] seconds (0: now), and the run index forgets it then; reads go to the history after.
-- Until then it keeps only what the run document is read from.
-- Also deletes, at most 100 at a time, the retired runs whose time has come, and drops them from
-- the index; with ARGV[1] empty it does only that (the recorder calls so while idle, so the
-- last runs before a pause leave on time too).
-- Returns 1, or 0 if the run has not ended (nothing changes).
local retention = tonumber(ARGV[3])
local now = server_now()
-- Delete every key of the run use_run points at.
local function delete_run()
  local names = {}
  for i, suffix in ipairs(RUN_HASHES) do names[i] = P .. suffix end
  redis.call('DEL', unpack(names))
end

-- Whether a node or foreach item of the run still runs (a cancelled run's nodes finish; a foreach
-- item is not in the run's 'active' count): its completion, or the reaper, still needs the
-- description and holds to end it and free what it holds.
local function still_running()
  for _, st in ipairs(redis.call('HVALS', STATUS)) do
    if st == NODE_STATUS.RUNNING then return true end
  end
  return false
end
-- A retired run's document in two keys: its run hash, written again without its DAG (so its
-- fields are all small and Redis packs it), and DOC, one JSON string {v = 1, dag, nodes = {node →
-- its NODE_FIELDS values in order, null where none, to its last value}} of what the document is
-- read from (client/document.py): 1.4 KB for a diamond, where the hashes took 2.7 KB. Done once.
local function compact(retention)
  local dag = redis.call('HGET', RUN, 'dag')
  if not dag then return end
  local values, nodes = {}, {}
  for i, field in ipairs(NODE_FIELDS) do  -- a call per hash, not per node and hash
    local flat = redis.call('HGETALL', P .. field)
    values[i] = {}
    for k = 1, #flat, 2 do values[i][flat[k]] = flat[k + 1] end
  end
  for _, node in ipairs(redis.call('HKEYS', STATUS)) do
    local row, last = {}, 0
    for i = 1, #NODE_FIELDS do
      local value = values[i][node]
      if value then row[i], last = value, i else row[i] = cjson.null end
    end
    for i = #NODE_FIELDS, last + 1, -1 do row[i] = nil end
    nodes[node] = row
  end
  for _, field in ipairs(NODE_FIELDS) do redis.call('DEL', P .. field) end
  redis.call('SET', DOC, cjson.encode({v = 1, dag = dag, nodes = nodes}), 'EX', math.ceil(retention))
  local fields = redis.call('HGETALL', RUN)
  local kept = {}
  for i = 1, #fields, 2 do
    if fields[i] ~= 'dag' then kept[#kept + 1], kept[#kept + 2] = fields[i], fields[i + 1] end
  end
  redis.call('DEL', RUN)
  redis.call('HSET', RUN, unpack(kept))
end

if RUN_ID ~= '' then
  local rs = redis.call('HGET', RUN, 'status')
  if rs == RUN_STATUS.RUNNING or rs == RUN_STATUS.FAILING or rs == RUN_STATUS.SUBMITTING then return 0 end
  redis.call('ZREM', UNRECORDED, RUN_ID)
  -- A node may still run after its run ended (cancelled, or failed by a sibling): its count in the
  -- frontier goes now, with the hash that remembers it, so an attempt that ends later (or a state
  -- that expires) leaves no demand behind for an autoscaler to chase.
  uncount_phases()
  -- What only a running run needs (messages, descriptions, counters) goes now, unless a node of a
  -- cancelled run still runs (its completion reads them); reads need only the run document's hashes.
  local running = still_running()
  if not running then
    for _, suffix in ipairs(SPENT_HASHES) do redis.call('DEL', P .. suffix) end
  end
  if retention <= 0 and not running then
    delete_run()
    redis.call('ZREM', RUNS, RUN_ID)
  else
    -- a run with nodes still running has no expiry: the sweep below deletes it once they have ended
    if not running then
      compact(retention)
      for _, suffix in ipairs(RUN_HASHES) do redis.call('EXPIRE', P .. suffix, math.ceil(retention)) end
    end
    redis.call('ZADD', RETIRED, now + math.max(retention, LEASE_SECONDS), RUN_ID)
  end
end
-- They are deleted here, not left to their keys' expiry (which stays, for when no recorder calls
-- again): Redis expires keys by sampling, lets up to a tenth of them wait in memory expired, and
-- then frees them in bursts; under steady load, the deletions here keep pace with the retirements.
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', RETIRED, '-inf', now, 'LIMIT', 0, 100)) do
  use_run(gone)
  if still_running() then
    redis.call('ZADD', RETIRED, now + LEASE_SECONDS, gone)  -- look again once its leases could lapse
  else
    delete_run()
    redis.call('ZREM', RUNS, gone)
    redis.call('ZREM', RETIRED, gone)
  end
end
return 1
