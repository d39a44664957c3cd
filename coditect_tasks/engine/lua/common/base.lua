-- Shared helpers of every engine script, after the constants engine/prelude.py renders from keys.py (key names,
-- leases, caps). ARGV[1] is the run id (empty for scripts that span runs), ARGV[2] the
-- caller's ISO-8601 UTC timestamp; a script's own arguments start at ARGV[3]. Keys are
-- derived from the run id.
local NOW = ARGV[2]
use_run(ARGV[1])

-- Redis's clock now, written as engine/transitions.py's now() writes a time (ISO-8601 UTC with
-- microseconds): for a transition whose moment is when this script runs, not when its caller
-- stamped the call.
local function server_iso()
  local clock = redis.call('TIME')
  local secs, micros = tonumber(clock[1]), tonumber(clock[2])
  local rem = secs % 86400
  -- the civil date of a count of days since 1970-01-01 (H. Hinnant's civil_from_days)
  local z = math.floor(secs / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local month = mp < 10 and mp + 3 or mp - 9
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00', yoe + era * 400 + (month <= 2 and 1 or 0), month,
                       doy - math.floor((153 * mp + 2) / 5) + 1, math.floor(rem / 3600), math.floor(rem % 3600 / 60),
                       rem % 60, micros)
end

-- The run hash's fields the hot paths read, once a call and run (a completion that takes and
-- queues the next node read its status three times and its trace twice): status, trace (its root
-- span), outbox ('1': its messages go through the outbox), seq (its submit order) and fair (its
-- fairness key). A script writes them through set_run, which forgets what was read.
local runs_read = {}
local function run_of()
  local r = runs_read[RUN_ID]
  if not r then
    local v = redis.call('HMGET', RUN, 'status', 'trace', 'outbox', 'seq', 'fair')
    r = {status = v[1], trace = v[2], outbox = v[3], seq = v[4], fair = v[5]}
    runs_read[RUN_ID] = r
  end
  return r
end

local function set_run(...)
  redis.call('HSET', RUN, ...)
  runs_read[RUN_ID] = nil
end

local function count(name)
  redis.call('HINCRBY', METRICS, name, 1)
end

-- Item k of a foreach node N is the pseudo-node 'N#k' in the run's hashes (node ids cannot hold
-- '#'): its own message, seq, lease, attempts and retries, as a node has. Items leave the run's
-- counters (remaining, running, metrics) and its history to their node, which they complete.
local function parent_of(node)
  return string.match(node, '^(.+)#%d+$')
end

-- A node's description: queue q, template t, successors s, predecessors p, foreach x/f, the
-- limits it holds h (limits.lua), its priority y and its rank k in its run (queueing.lua's hold).
-- An item's is its node's, with no successors. Read once a call (a node's transitions read it
-- several times): a script that changes one (reroute) changes the table it got here too.
local descs = {}
local function desc_of(node)
  local key = RUN_ID .. '|' .. node
  if descs[key] then return descs[key] end
  local parent, d = parent_of(node), nil
  if parent then
    local of = cjson.decode(redis.call('HGET', NODE, parent))
    d = {q = of.q, t = of.t, s = {}, p = of.p, h = of.h, y = of.y, k = of.k, item = true}
  else
    d = cjson.decode(redis.call('HGET', NODE, node))
  end
  descs[key] = d
  return d
end

-- The values of hash's `fields` (false where none), a thousand a command: a join of 10,000
-- predecessors read their results one command each, 37 ms.
local function values_of(hash, fields)
  local out = {}
  for first = 1, #fields, 1000 do
    local got = redis.call('HMGET', hash, unpack(fields, first, math.min(first + 999, #fields)))
    for j = 1, #got do out[first + j - 1] = got[j] end
  end
  return out
end

-- The agent a description's messages go to (its queue is 'agents.<name>'; a fallback reroutes it).
local function agent_of(desc)
  return string.sub(desc.q, #AGENT_QUEUE_PREFIX + 1)
end

-- The agent of each of many nodes of the run (not items: a wide node's successors; nil for a
-- node that calls none), their descriptions read a thousand a command. Only the agents are kept:
-- ten thousand descriptions held live made each of Lua's collections walk them all.
local function agents_of(nodes)
  local out, got = {}, values_of(NODE, nodes)
  for i, node in ipairs(nodes) do
    local d = descs[RUN_ID .. '|' .. node] or cjson.decode(got[i])
    out[i] = d.q and agent_of(d)
  end
  return out
end
