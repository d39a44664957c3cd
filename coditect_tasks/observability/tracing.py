"""Tracing: one OpenTelemetry trace per DAG run, across every worker that runs a node.

``submit`` opens the run's root span and stores its W3C ``traceparent`` with the run;
every node attempt opens a span whose parent is the span of the predecessor that let
it start (the one that finished last), linked to all its predecessors, so the trace
draws the DAG. The root's traceparent also rides in every node message's headers, so
opentelemetry-instrumentation-celery's own task spans join the same trace.

Export is configured by the standard ``OTEL_*`` variables: with an OTLP endpoint set
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) each
process exports over OTLP/HTTP. Without one, nothing is exported but runs still get a
trace id, so log lines can be correlated anyway.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACER = "coditect_tasks"
_PROPAGATOR = TraceContextTextMapPropagator()
_configured_in: int | None = None


def export_configured() -> bool:
    """Whether the ``OTEL_*`` environment asks for spans to be exported."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup_tracing(service: str) -> bool:
    """Install an OTLP-exporting tracer provider in this process, once, if configured.

    Call it after a fork (Celery's ``worker_process_init``): the batch exporter's
    thread does not survive one. Returns whether spans are exported.
    """
    global _configured_in
    if _configured_in == os.getpid():
        return True
    if not export_configured():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured_in = os.getpid()
    return True


def flush() -> None:
    """Export what is buffered (before a process ends)."""
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush()


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER)


def traceparent(span: trace.Span) -> str:
    """The W3C ``traceparent`` of ``span`` ("" for an invalid one)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


def context_of(parent: str) -> Context | None:
    """The context whose current span is the one ``parent`` (a traceparent) names."""
    return _PROPAGATOR.extract({"traceparent": parent}) if parent else None


def _span_context_of(parent: str) -> trace.SpanContext | None:
    context = context_of(parent)
    if context is None:
        return None
    span_context = trace.get_current_span(context).get_span_context()
    return span_context if span_context.is_valid else None


@contextmanager
def run_span(name: str, nodes: int) -> Iterator[trace.Span]:
    """The root span of a run being submitted; without an exporter, a bare trace id."""
    with tracer().start_as_current_span(
        f"dag.run {name}", kind=trace.SpanKind.PRODUCER, attributes={"coditect.dag": name, "coditect.nodes": nodes}
    ) as span:
        if not span.get_span_context().is_valid:  # no SDK: still give the run a trace id for its logs
            span = trace.NonRecordingSpan(
                trace.SpanContext(
                    trace_id=random.getrandbits(128),
                    span_id=random.getrandbits(64),
                    is_remote=False,
                )
            )
        yield span


@contextmanager
def node_span(agent: str, run_id: str, node_id: str, attempt: int, parent: str, links: str) -> Iterator[trace.Span]:
    """The span of one node attempt, current while it runs; ``links`` is a JSON list of traceparents."""
    found = [_span_context_of(tp) for tp in json.loads(links or "[]")]
    attributes: dict[str, Any] = {
        "coditect.run_id": run_id,
        "coditect.node_id": node_id,
        "coditect.agent": agent,
        "coditect.attempt": attempt,
    }
    with tracer().start_as_current_span(
        f"node {node_id}",
        context=context_of(parent),
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
        links=[trace.Link(sc) for sc in found if sc is not None],
    ) as span:
        yield span


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, if there is one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def instrument_celery() -> None:
    """Trace Celery's own publish and run steps (opentelemetry-instrumentation-celery)."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]  # untyped constructor
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
