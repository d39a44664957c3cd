"""The Celery app factory: one place that turns ``Settings`` into a configured app.

Defaults are the production-safe ones: JSON only (never pickle), late acks with
reject-on-worker-lost so a killed worker's task is redelivered, prefetch of one so
a slow agent call does not hoard queued work, bounded time limits, expiring results.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from celery import Celery

from .agents import MAX_TIMEOUT, Agent, load_agents, route
from .sentinel import celery_form
from .settings import REDIS_SCHEMES, Settings
from .worker.tasks import install

#: Seconds a stored task result lives in the result backend.
RESULT_EXPIRES = 24 * 3600


class CoditectApp(Celery):  # type: ignore[misc]  # celery ships no type hints
    """A Celery app that knows the settings and agents it was built from."""

    settings: Settings
    agents: Mapping[str, Agent]


def app_from_env() -> CoditectApp:
    """The app of the ``CODITECT_*`` settings (attached to the running embedded stack when none is
    configured): ``coditect_tasks.celery``, where ``celery -A coditect_tasks`` finds it."""
    from .embedded import attach

    return create_app(attach(Settings.from_env()))


def create_app(settings: Settings, agents: Mapping[str, Agent] | None = None) -> CoditectApp:
    """Build the app for ``settings``; ``agents`` defaults to the configured modules."""
    declared = load_agents(settings.agent_modules) if agents is None else agents
    broker, broker_options = celery_form(settings.require_broker(), broker=True)  # a Sentinel URL, as kombu takes it
    backend, backend_options = celery_form(settings.backend_url) if settings.backend_url else (None, {})
    app = CoditectApp("coditect", broker=broker, backend=backend, set_as_current=False)
    app.settings = settings
    app.agents = declared
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A broker outage is not a worker death: running calls go on. Their leases outlast the
        # outage (reap.lua) and begin.lua drops a redelivered message while its attempt is alive.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.connect_timeout,
        # kombu's Redis transport redelivers an unacknowledged message after this many seconds:
        # above the longest time limit, so it never supersedes a live attempt (leases do failover).
        broker_transport_options={"visibility_timeout": MAX_TIMEOUT + 3600, **broker_options},
        result_backend_transport_options=backend_options,
        redis_socket_connect_timeout=settings.connect_timeout,
        result_expires=RESULT_EXPIRES,
        task_routes=(route,),
        task_default_queue="coditect.default",
        task_time_limit=3600,
        task_soft_time_limit=3500,
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
        enable_utc=True,
    )
    if settings.outbox and urlsplit(settings.require_broker()).scheme not in REDIS_SCHEMES:  # RabbitMQ
        app.conf.update(
            # RabbitMQ: replicated queues that survive a broker node, and a publish returns only
            # once the broker has the message (the outbox drops an entry only then)
            task_create_missing_queue_type="quorum",
            task_default_queue_type="quorum",
            broker_transport_options={"confirm_publish": True},
        )
    install(app, dict(declared))
    return app
