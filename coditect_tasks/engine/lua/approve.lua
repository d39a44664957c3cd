-- ARGV[4] decides on approval node ARGV[3] of run ARGV[1]: ARGV[5] is 'approve' or 'reject', ARGV[6]
-- a comment. Each decision is kept (the node's approvals, and its history). Enough approvals from
-- distinct people succeed the node with them all; one rejection fails it. Returns as JSON {ok = 1,
-- status (the node's now), approvals (how many so far), needed} or {ok = 0, why}.
local node, by, decision, comment = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local st = redis.call('HGET', STATUS, node)
if not st then return cjson.encode({ok = 0, why = 'run ' .. RUN_ID .. ' has no node ' .. node}) end
local w = desc_of(node).w
if not w or w.k ~= 'approval' then return cjson.encode({ok = 0, why = 'node ' .. node .. ' is not an approval'}) end
if st ~= NODE_STATUS.WAITING then return cjson.encode({ok = 0, why = 'node ' .. node .. ' is ' .. st .. ', not waiting'}) end
local decisions = cjson.decode(redis.call('HGET', APPROVALS, node) or '[]')
local approvers = {}
for _, d in ipairs(decisions) do
  if d.decision == 'approve' then approvers[d.by] = true end
end
if decision == 'approve' and approvers[by] then
  return cjson.encode({ok = 0, why = by .. ' has approved node ' .. node .. ' already'})
end
decisions[#decisions + 1] = {by = by, decision = decision, comment = comment, at = NOW}
redis.call('HSET', APPROVALS, node, cjson.encode(decisions))
record(node, decision == 'approve' and 'approved' or 'rejected', {'detail', cjson.encode({by = by, comment = comment})})
if decision == 'reject' then
  fail_wait(node, 'rejected by ' .. by .. (comment ~= '' and (': ' .. comment) or ''))
else
  approvers[by] = true
  local given = 0
  for _ in pairs(approvers) do given = given + 1 end
  if given >= w.n then resolve_wait(node, cjson.encode({approved_by = decisions})) end
end
local given = 0
for _ in pairs(approvers) do given = given + 1 end
return cjson.encode({ok = 1, status = redis.call('HGET', STATUS, node), approvals = given, needed = w.n})
