-- Limits' definitions, and what each holds now. ARGV[3] is the operation, on limit ARGV[4]:
-- * declare ARGV[5]: the definition in code (limits.Limit JSON), written by every process that
--   declares it (a worker starting, a client submitting);
-- * set ARGV[5]: an operator's change (fields of the definition), kept over the declared one until
--   unset (`coditect-tasks limits set`);
-- * unset: drop the operator's change (and the limit, if no code declares it);
-- * read (ARGV[4] empty: every limit): the document of `coditect-tasks limits`.
-- A change takes effect at the next dispatch, and lets go at once the waiters it makes room for.
-- Returns JSON: the limit's definition now (or null: it is gone; {error} if a set would leave it
-- empty), or read's document.
local op, name = ARGV[3], ARGV[4]

local function merged()
  local declared, set = redis.call('HGET', LIMITS_DECLARED, name), redis.call('HGET', LIMITS_SET, name)
  if not declared and not set then return nil end
  local def = declared and cjson.decode(declared) or {per = 1}
  for field, value in pairs(set and cjson.decode(set) or {}) do def[field] = value end
  return def
end

local function apply()
  local def = merged()
  if def then redis.call('HSET', LIMITS, name, cjson.encode(def)) else redis.call('HDEL', LIMITS, name) end
  forget_limit_defs()
  for _, kv in ipairs(redis.call('SMEMBERS', LIMIT_PREFIX .. name)) do wake(name, kv, WAKE_BUDGET) end
  return def
end

-- One limit's document: its definition, the operator's change, and per key value what holds it.
local function limit_document(limit)
  local def = limit_def(limit)
  local now = server_now()
  local keys_used = {}
  for _, kv in ipairs(redis.call('SMEMBERS', LIMIT_PREFIX .. limit)) do
    local base = limit_base(limit, kv)
    local units = 0
    if def.rate then
      purge(base, now - def.per)
      units = tonumber(redis.call('GET', base .. 'u') or '0')
    end
    local oldest = redis.call('ZRANGE', base .. 'w', 0, 0, 'WITHSCORES')[2]
    local entry = {key = kv, in_use = redis.call('ZCARD', base .. 'h'), waiting = redis.call('ZCARD', base .. 'w'),
                   units = units, oldest_wait = oldest and (now - tonumber(oldest)) or 0}
    if entry.in_use + entry.waiting + units == 0 then tidy(limit, kv) else keys_used[#keys_used + 1] = entry end
  end
  local set = redis.call('HGET', LIMITS_SET, limit)
  return {name = limit, definition = def, declared = redis.call('HEXISTS', LIMITS_DECLARED, limit) == 1,
          changed = set and cjson.decode(set) or false, keys = keys_used}
end

if op == 'read' then
  local out = {}
  for i, limit in ipairs(redis.call('HKEYS', LIMITS)) do
    if name == '' or name == limit then out[#out + 1] = limit_document(limit) end
  end
  return cjson.encode(out)
elseif op == 'declare' then
  redis.call('HSET', LIMITS_DECLARED, name, ARGV[5])
elseif op == 'set' then
  local before = redis.call('HGET', LIMITS_SET, name)
  local change = cjson.decode(before or '{}')
  for field, value in pairs(cjson.decode(ARGV[5])) do change[field] = value end
  redis.call('HSET', LIMITS_SET, name, cjson.encode(change))
  local def = merged()
  if not (def.concurrency or def.rate) then  -- only a window, on a limit no code declares: refused
    if before then redis.call('HSET', LIMITS_SET, name, before) else redis.call('HDEL', LIMITS_SET, name) end
    return cjson.encode({error = 'limit ' .. name .. ' would have neither a concurrency nor a rate'})
  end
elseif op == 'unset' then
  redis.call('HDEL', LIMITS_SET, name)
else
  error('unknown limit operation ' .. op)
end
return cjson.encode(apply() or cjson.null)
