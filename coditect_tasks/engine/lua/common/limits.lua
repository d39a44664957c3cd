-- Limits: a node takes every limit it holds (its description's h: {limit, key value, units}) before
-- its message is queued, all or none, or it waits queued, with no message, for the first that is
-- full (limits.py). Waiters are let go in the order they began to wait (queueing.lua's wake).

-- Definitions as this script call first read them (LIMITS): JSON decoded once per call, not per node.
local limit_defs = {}
local function limit_def(name)
  local d = limit_defs[name]
  if d == nil then
    local raw = redis.call('HGET', LIMITS, name)
    d = raw and cjson.decode(raw) or false
    limit_defs[name] = d
  end
  return d
end

local function forget_limit_defs()
  limit_defs = {}
end

local function limit_base(name, kv)
  return LIMIT_PREFIX .. name .. '|' .. kv .. '|'
end

-- Add n (negative: take) to the units charged in a rate window. Not INCRBYFLOAT: called from a
-- script, Redis 6.2 rewrites its arguments past the script's argument buffer (to replicate it as a
-- SET), which corrupted the heap of the embedded Redis (built with libc malloc) and crashed it.
local function add_units(base, n)
  local units = tonumber(redis.call('GET', base .. 'u') or '0') + n
  redis.call('SET', base .. 'u', string.format('%.17g', units))
end

-- Drop the rate window's charges made before `before` from its log and its units.
local function purge(base, before)
  local old = redis.call('ZRANGEBYSCORE', base .. 'r', '-inf', before)
  if #old == 0 then return end
  redis.call('ZREMRANGEBYSCORE', base .. 'r', '-inf', before)
  if redis.call('ZCARD', base .. 'r') == 0 then
    redis.call('DEL', base .. 'u')  -- no float drift survives an empty window
    return
  end
  local freed = 0
  for _, charge in ipairs(old) do freed = freed + tonumber(string.match(charge, '|([^|]+)$')) end
  add_units(base, -freed)
end

-- The units charged within the rate window ending `now`, and its oldest charge's time. Expired
-- charges are dropped in batches (once an eighth of a window has expired) while the window has
-- room, and all of them whenever the count matters (`need` more units would not fit): exact where
-- it decides, and few calls where it does not.
local function rate_used(base, per, now, need, rate)
  local oldest = tonumber(redis.call('ZRANGE', base .. 'r', 0, 0, 'WITHSCORES')[2] or now)
  local used = tonumber(redis.call('GET', base .. 'u') or '0')
  if oldest <= now - per * 1.125 or (oldest <= now - per and used + need > rate) then
    purge(base, now - per)
    oldest = tonumber(redis.call('ZRANGE', base .. 'r', 0, 0, 'WITHSCORES')[2] or now)
    used = tonumber(redis.call('GET', base .. 'u') or '0')
  end
  return used, oldest
end

-- Take every limit of holds for member ("run|node", which began to wait at `since`), all or none.
-- Returns nil when taken, else the first limit it cannot take now: {name, kv, due} (due: when that
-- limit's rate window next frees units). One that waits earlier comes first: a member never passes
-- an older waiter of the same limit, so a flood of new nodes cannot starve it.
local function take_limits(member, holds, since)
  local now = server_now()
  since = tonumber(since)
  local plan = {}
  for _, h in ipairs(holds) do
    local name, kv = h[1], h[2]
    local d = limit_def(name)
    if d then
      local base = limit_base(name, kv)
      local step = {name = name, kv = kv, base = base, d = d, charge = d.rate and math.min(h[3], d.rate)}
      local waiters = redis.call('ZCARD', base .. 'w')
      step.held = d.concurrency and redis.call('ZCARD', base .. 'h')
      -- a node queued again (its message was lost) holds its slot still: it neither queues behind
      -- the waiters nor counts itself against the limit (asked only where it could matter)
      local holding = (waiters > 0 or (step.held and step.held >= d.concurrency))
                      and redis.call('ZSCORE', base .. 'h', member)
      if waiters > 0 and not holding then
        local head = redis.call('ZRANGE', base .. 'w', 0, 0, 'WITHSCORES')
        local first, at = head[1], tonumber(head[2])
        if first ~= member and (at < since or (at == since and first < member)) then return {name = name, kv = kv} end
      end
      if step.held and step.held >= d.concurrency and not holding then return {name = name, kv = kv} end
      if d.rate then
        local used, oldest = rate_used(base, d.per, now, step.charge, d.rate)
        if used + step.charge > d.rate then return {name = name, kv = kv, due = oldest + d.per} end
        step.used = used
      end
      plan[#plan + 1] = step
    end
  end
  for _, step in ipairs(plan) do
    if step.held == 0 or step.used == 0 then redis.call('SADD', LIMIT_PREFIX .. step.name, step.kv) end
    if step.d.concurrency then redis.call('ZADD', step.base .. 'h', now, member) end
    if step.d.rate then
      -- a node dearer than the whole window runs alone in it
      redis.call('ZADD', step.base .. 'r', now, member .. '|' .. now .. '|' .. step.charge)
      add_units(step.base, step.charge)
    end
  end
  return nil
end

-- The limit's rate window frees units at `at`: the pacer lets its waiters go then. A pacer asleep
-- until a later time is woken.
local function schedule(name, kv, at)
  local first = redis.call('ZRANGE', LIMITS_DUE, 0, 0, 'WITHSCORES')
  redis.call('ZADD', LIMITS_DUE, 'LT', at, name .. '|' .. kv)
  if not first[2] or at < tonumber(first[2]) then redis.call('PUBLISH', CLOCK_CHANNEL, tostring(at)) end
end

-- Where node waits: {name, since, kv} from THROTTLED, or nil. `since` is kept as the text its
-- waiting set's score was written from, so both compare equal.
local function throttled_on(node)
  local raw = redis.call('HGET', THROTTLED, node)
  if not raw then return nil end
  local name, since, kv = string.match(raw, '^([^|]+)|([^|]+)|(.*)$')
  return {name = name, since = since, kv = kv}
end

-- A limit key no node holds, waits for or has charged within its window leaves its limit's index.
local function tidy(name, kv)
  local base = limit_base(name, kv)
  if redis.call('ZCARD', base .. 'h') + redis.call('ZCARD', base .. 'w') + redis.call('ZCARD', base .. 'r') == 0 then
    redis.call('SREM', LIMIT_PREFIX .. name, kv)
    redis.call('DEL', base .. 'u')
  end
end
