"""DAGs of agent calls, the model only: the document (``spec``), validation and planning with
networkx (``plan``), and drawing (``graph``). No I/O: running a DAG is the engine's
(``coditect_tasks.engine``), submitting one the client's (``coditect_tasks.client``).

Nothing is imported here: ``spec`` alone (what every CLI command loads) must not pull in
networkx, which ``plan`` needs and which costs a fifth of a second to import."""
