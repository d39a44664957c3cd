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

-- The units charged within the rate window ending now, after its older charges are dropped.
local function rate_used(base, per, now)
  local old = redis.call('ZRANGEBYSCORE', base .. 'r', '-inf', now - per)
  if #old == 0 then return tonumber(redis.call('GET', base .. 'u') or '0') end
  redis.call('ZREMRANGEBYSCORE', base .. 'r', '-inf', now - per)
  if redis.call('ZCARD', base .. 'r') == 0 then
    redis.call('DEL', base .. 'u')  -- no float drift survives an empty window
    return 0
  end
  local freed = 0
  for _, charge in ipairs(old) do freed = freed + tonumber(string.match(charge, '|([^|]+)$')) end
  return tonumber(redis.call('INCRBYFLOAT', base .. 'u', -freed))
end

-- Take every limit of holds for member ("run|node", which began to wait at `since`), all or none.
-- Returns nil when taken, else the first limit it cannot take now: {name, kv, due} (due: when that
-- limit's rate window next frees units). One that waits earlier comes first: a member never passes
-- an older waiter of the same limit, so a flood of new nodes cannot starve it.
local function take_limits(member, holds, since)
  local now = server_now()
  since = tonumber(since)
  for _, h in ipairs(holds) do
    local name, kv, units = h[1], h[2], h[3]
    local d = limit_def(name)
    if d then
      local base = limit_base(name, kv)
      local head = redis.call('ZRANGE', base .. 'w', 0, 0, 'WITHSCORES')
      local first, at = head[1], tonumber(head[2] or '0')
      if first and first ~= member and (at < since or (at == since and first < member)) then
        return {name = name, kv = kv}
      end
      if d.concurrency and not redis.call('ZSCORE', base .. 'h', member)
         and redis.call('ZCARD', base .. 'h') >= d.concurrency then
        return {name = name, kv = kv}
      end
      if d.rate and rate_used(base, d.per, now) + math.min(units, d.rate) > d.rate then
        local oldest = redis.call('ZRANGE', base .. 'r', 0, 0, 'WITHSCORES')
        return {name = name, kv = kv, due = tonumber(oldest[2] or now) + d.per}
      end
    end
  end
  for _, h in ipairs(holds) do
    local name, kv, units = h[1], h[2], h[3]
    local d = limit_def(name)
    if d then
      local base = limit_base(name, kv)
      redis.call('SADD', LIMIT_PREFIX .. name, kv)
      if d.concurrency then redis.call('ZADD', base .. 'h', now, member) end
      if d.rate then
        local charge = math.min(units, d.rate)  -- a node dearer than the whole window runs alone in it
        redis.call('ZADD', base .. 'r', now, member .. '|' .. now .. '|' .. charge)
        redis.call('INCRBYFLOAT', base .. 'u', charge)
      end
    end
  end
  return nil
end

-- The limit's rate window frees units at `due`: the pacer lets its waiters go then. A pacer asleep
-- until a later time is woken.
local function schedule(name, kv, due)
  local first = redis.call('ZRANGE', LIMITS_DUE, 0, 0, 'WITHSCORES')
  redis.call('ZADD', LIMITS_DUE, 'LT', due, name .. '|' .. kv)
  if not first[2] or due < tonumber(first[2]) then redis.call('PUBLISH', LIMITS_CHANNEL, tostring(due)) end
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
