-- Shared prelude of every engine script. ARGV[1] is the run's key prefix,
-- ARGV[2] the run id, ARGV[3] the caller's ISO-8601 UTC timestamp.
local P, RUN_ID, NOW = ARGV[1], ARGV[2], ARGV[3]
local RUN = P .. 'run'
local STATUS, ATTEMPTS, PENDING = P .. 'status', P .. 'attempts', P .. 'pending'
local NODE, RESULT, ERROR = P .. 'node', P .. 'result', P .. 'error'
local WORKER, STARTED, FINISHED = P .. 'worker', P .. 'started', P .. 'finished'
local SEQ, TPL = P .. 'seq', P .. 'tpl'
local HISTORY = 'coditect:history'
local HISTORY_CAP = 16384   -- bytes of a result or error copied into the history stream
local LIVE_TTL = 7 * 24 * 3600   -- seconds a finished run's live state is kept

local function record(node, status, extra)
  local args = {'XADD', HISTORY, '*', 'run', RUN_ID, 'node', node, 'status', status, 'at', NOW}
  if extra then
    for i = 1, #extra do args[#args + 1] = extra[i] end
  end
  redis.call(unpack(args))
end

-- Publish one node's Celery message straight onto its agent's queue, atomically
-- with its state change: no window in which a ready node is known but not queued.
local function enqueue(node)
  local desc = cjson.decode(redis.call('HGET', NODE, node))
  local seq = redis.call('HINCRBY', SEQ, node, 1)
  local tid = RUN_ID .. ':' .. node .. ':' .. seq
  local msg = redis.call('HGET', TPL, desc.t)
  msg = string.gsub(msg, '@@NODE@@', node)
  msg = string.gsub(msg, '@@TID@@', tid)
  redis.call('HSET', STATUS, node, 'queued')
  redis.call('LPUSH', desc.q, msg)
  record(node, 'queued')
end

local function expire_all()
  for _, suffix in ipairs({'run', 'status', 'attempts', 'pending', 'node', 'params', 'result', 'error',
                           'worker', 'started', 'finished', 'seq', 'tpl'}) do
    redis.call('EXPIRE', P .. suffix, LIVE_TTL)
  end
end

local function finish()
  local rs = redis.call('HGET', RUN, 'status')
  local final
  if rs == 'running' then final = 'succeeded' elseif rs == 'failing' then final = 'failed' else return end
  redis.call('HSET', RUN, 'status', final, 'finished_at', NOW)
  record('', final)
  redis.call('PUBLISH', 'coditect:run:' .. RUN_ID .. ':done', final)
  expire_all()
end

-- Skip every node that has not started: the run has failed and starts nothing new.
local function skip_unstarted()
  local all = redis.call('HGETALL', STATUS)
  local remaining = tonumber(redis.call('HGET', RUN, 'remaining'))
  for i = 1, #all, 2 do
    local st = all[i + 1]
    if st == 'pending' or st == 'queued' then
      redis.call('HSET', STATUS, all[i], 'skipped')
      record(all[i], 'skipped')
      remaining = redis.call('HINCRBY', RUN, 'remaining', -1)
    end
  end
  return remaining
end

local function fenced(node, token)
  return redis.call('HGET', STATUS, node) == 'running' and redis.call('HGET', ATTEMPTS, node) == token
end
