"""Log records over OTLP (``logs.exported``): a process with ``OTEL_LOGS_EXPORTER=otlp`` sends each
line, with the trace context it was written in, to the collector: here a real HTTP receiver on
loopback, the records decoded from the protobuf the exporter posted."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

EMIT = r"""
import logging, structlog
from coditect_tasks.observability import logs, tracing
tracing.setup_tracing("coditect-test")
logs.configure_logging("INFO", json_lines=True)
with tracing.tracer().start_as_current_span("node") as span:
    structlog.get_logger("probe").info("node began", run_id="r1")
    print(format(span.get_span_context().trace_id, "032x"))
for handler in logging.getLogger().handlers:
    handler.flush()
"""


class Receiver(BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.posts.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _export(env: dict[str, str]) -> tuple[str, list[tuple[str, bytes]]]:
    Receiver.posts = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}"}
        done = subprocess.run(
            [sys.executable, "-c", EMIT], env={**env, **endpoint}, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip(), list(Receiver.posts)
    finally:
        server.shutdown()


def test_a_log_line_goes_over_otlp_with_its_trace() -> None:
    trace_id, posts = _export({"OTEL_LOGS_EXPORTER": "otlp", "PATH": "/usr/bin:/bin"})
    logs = [body for path, body in posts if path == "/v1/logs"]
    assert logs, [path for path, _ in posts]
    records = [
        record
        for body in logs
        for resource in ExportLogsServiceRequest.FromString(body).resource_logs
        for scope in resource.scope_logs
        for record in scope.log_records
    ]
    line = next(r for r in records if "node began" in r.body.string_value)
    assert line.trace_id.hex() == trace_id
    assert json.loads(line.body.string_value)["trace_id"] == trace_id  # the line itself names it too


def test_without_the_setting_no_log_leaves_the_process() -> None:
    _, posts = _export({"PATH": "/usr/bin:/bin"})
    assert [path for path, _ in posts if path == "/v1/logs"] == []
