"""The worker side: what runs inside ``coditect-tasks worker`` processes.

``tasks`` binds agents to a Celery app as tasks, ``execution`` runs one node attempt
(or one foreach item) through an ``Attempt``, ``heartbeat`` announces the worker and
reaps expired leases, ``health`` is its probe file and ``shutdown`` its graceful
scale-in. Imports point one way: this package uses the engine (``coditect_tasks.engine``) and
the engine never imports it; ``app.create_app`` installs it on every app, so producers
hold the same app the workers run.
"""
