-- Take-next: a pool process that finished a node takes the next message of its queue itself.

-- A pool process that has finished a node takes the next message of its own queue (the oldest)
-- itself, in the same script: one round trip per node instead of four (the consumer's ack, pop
-- and unacked record, then begin). An empty queue is first refilled from the nodes waiting past
-- its hand-off window, so a short window never costs a process its fast path. Only the engine's own messages for the same task with the same
-- time limits (`hard`, `soft`: '' for none) are taken; any other message is put back where it
-- was and the process returns to Celery. A stale or duplicate message is dropped, as begin drops
-- it. The node taken is noted under the running message's id `via` (TAKEN_AFTER_PREFIX, for `ttl`
-- seconds) for the main process's hard-time-limit and shutdown paths. Returns {run, node, task}
-- and take's reply, or nil.
local function same_limit(value, want)
  if want == '' then return type(value) ~= 'number' end
  return type(value) == 'number' and value == tonumber(want)
end

local function take_next(queue, task, hard, soft, worker, breaker, via, ttl)
  for _ = 1, TAKE_NEXT_TRIES do
    local raw = redis.call('RPOP', queue)
    if not raw and refill(queue, 1) > 0 then raw = redis.call('RPOP', queue) end  -- one waiting past the window
    if not raw then return nil end
    local ok, env = pcall(cjson.decode, raw)
    if not (ok and type(env) == 'table') then env = {} end
    local headers = type(env.headers) == 'table' and env.headers or {}
    local limits = type(headers.timelimit) == 'table' and headers.timelimit or {}
    local okb, body = pcall(cjson.decode, type(env.body) == 'string' and env.body or '')
    local kwargs = okb and type(body) == 'table' and type(body[2]) == 'table' and body[2] or {}
    local run, node, task_id = kwargs.run_id, kwargs.node_id, headers.id
    if not (headers[ORDER_HEADER] and headers.task == task and same_limit(limits[1], hard)
            and same_limit(limits[2], soft) and type(run) == 'string' and type(node) == 'string'
            and type(task_id) == 'string') then
      redis.call('RPUSH', queue, raw)  -- a plain call, or other limits: Celery runs it
      return nil
    end
    use_run(run)
    -- the node begins when this script takes it, not when its caller stamped the call (a process
    -- held up between the two would date the node's start before its message was even queued)
    local stamped = NOW
    NOW = server_iso()
    local taken, reply = pcall(take, node, worker, task_id, breaker)
    NOW = stamped
    if not taken then
      redis.call('RPUSH', queue, raw)  -- its run's state is broken or going: leave it to begin's checks
      return nil
    end
    if reply.ok == 1 then
      redis.call('SET', TAKEN_AFTER_PREFIX .. via, run .. '|' .. node .. '|' .. task_id, 'EX', ttl)
      return {run = run, node = node, task = task_id}, reply
    end
  end
  return nil
end
