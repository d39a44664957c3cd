"""Observability: structlog logs, OpenTelemetry traces, Prometheus metrics.

``logs`` and ``tracing`` are plain setup functions; ``signals`` wires them into a
worker in one place; ``metrics`` is the exporter's collector over Redis.
"""
