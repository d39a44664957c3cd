-- Attempt ARGV[4] of node ARGV[3] streams chunk ARGV[5] (JSON): appended to the run's output
-- stream unless the attempt is no longer the node's running one (a stale attempt's output never
-- mixes with its successor's), or its attempt has streamed ARGV[6] chunks already. The first
-- chunk of an attempt after one that streamed is preceded by a rewind entry, so a reader drops
-- what it showed of the earlier attempt. Returns the entry id, 'stale' or 'full'.
local node, token, chunk, most = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
if not fenced(node, token) then return 'stale' end
local attempt, chunks = '', 0
local was = redis.call('HGET', STREAMED, node)
if was then
  local bar = string.find(was, '|', 1, true)
  attempt, chunks = string.sub(was, 1, bar - 1), tonumber(string.sub(was, bar + 1))
end
if attempt ~= token then
  if chunks > 0 then redis.call('XADD', OUTPUT, '*', 'n', node, 'a', token, 'r', '1') end
  chunks = 0
end
if chunks >= most then return 'full' end
local id = redis.call('XADD', OUTPUT, '*', 'n', node, 'a', token, 'c', chunk)
redis.call('HSET', STREAMED, node, token .. '|' .. (chunks + 1))
return id
