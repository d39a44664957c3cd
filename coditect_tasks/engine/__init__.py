"""The engine: run state in Redis, changed only by atomic Lua scripts.

``transitions`` is the API over the scripts (``scripts`` loads them from ``lua/``) that workers
and the reaper call; ``submission`` prepares one run's writes, ``message`` the node message
templates the scripts fill in, ``events`` the transitions as events. No worker code and no
client code: both call down into this package, never the reverse.
"""
