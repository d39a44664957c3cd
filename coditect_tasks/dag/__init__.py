"""DAGs of agent calls: the model (``spec``), validation and planning (``plan``),
run state over Lua scripts (``engine``) and the run handle (``run``). Executing a
node is the worker's side (``coditect_tasks.worker``).

Nothing is imported here: ``spec`` alone (what every CLI command loads) must not pull in
networkx, which ``plan`` needs and which costs a fifth of a second to import."""
