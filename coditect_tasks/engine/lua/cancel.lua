-- Cancel the run: it ends now; nodes not yet running become cancelled, and so do foreach nodes
-- that have fanned out (their running items finish, their queued ones never start), and every run
-- its waiting nodes spawned, down the tree. Returns as JSON {ok = 1, queued = the task ids of
-- queued node messages to revoke} or {ok = 0, status}.
local queued = {}
if not cancel_run(queued) then return cjson.encode({ok = 0, status = redis.call('HGET', RUN, 'status') or 'missing'}) end
return cjson.encode({ok = 1, queued = queued})
