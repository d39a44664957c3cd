-- Start a run whose hashes the same transaction has just written. ARGV[3..5]: the idempotency
-- key's Redis key ('' for none), the DAG's digest and the seconds the key holds; ARGV[6]: how
-- many nodes a retry reuses from its parent run (already succeeded), ARGV[7..]: those nodes,
-- then the roots to queue now (at most ROOT_SLICE; the rest wait in the run's UNPUSHED list,
-- queued by roots.lua). A key an earlier run holds refuses this one: its hashes go, and the
-- key's value ('<run id> <digest>') comes back, so two racing submits with one key make one run.
-- Idempotent: a retried submit whose first try got through changes nothing.
if redis.call('HGET', RUN, 'status') ~= RUN_STATUS.SUBMITTING then return 0 end
local idem = ARGV[3]
if idem ~= '' then
  local held = redis.call('GET', idem)
  if held then
    for _, suffix in ipairs(RUN_HASHES) do redis.call('DEL', P .. suffix) end
    redis.call('ZREM', RUNS, RUN_ID)
    redis.call('ZREM', SUBMITTING, RUN_ID)
    return held
  end
  redis.call('SET', idem, RUN_ID .. ' ' .. ARGV[4], 'EX', tonumber(ARGV[5]))
end
start_run()
local reused = tonumber(ARGV[6])
for i = 7, 6 + reused do
  record(ARGV[i], NODE_STATUS.SUCCEEDED, {'attempt', 0, 'result', string.sub(redis.call('HGET', RESULT, ARGV[i]), 1, HISTORY_CAP)})
end
for i = 7 + reused, #ARGV do enqueue(ARGV[i]) end
return #ARGV - 6 - reused
