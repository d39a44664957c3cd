"""``bench``: the DAG engine against plain Celery on the same workers, in one run."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.table import Table

from ..settings import Settings
from .context import emit_json, err, out, temporary_stack


def bench(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    repeats: Annotated[int, typer.Option(min=1, help="Repetitions; medians are reported.")] = 3,
    fan: Annotated[int, typer.Option(min=1, help="Nodes in the fan-out.")] = 1000,
    length: Annotated[int, typer.Option(min=2, help="Nodes in the chain.")] = 200,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker processes serving noop.")] = 2,
    observability: Annotated[
        bool, typer.Option("--observability", help="Instead: DAG throughput with workers exporting traces vs not.")
    ] = False,
    footprint_only: Annotated[
        bool, typer.Option("--footprint", help="Only what a node costs Redis: memory, CPU, the fan-out edge.")
    ] = False,
) -> None:
    """Measure the DAG engine against plain Celery on the same workers, in one run."""
    from ..app import create_app
    from ..bench import run_engine_bench
    from ..footprint import run_footprint_bench

    config = Settings.from_env()
    if observability and footprint_only:
        raise typer.BadParameter("choose one of --observability and --footprint", param_hint="--footprint")
    if observability:
        _bench_observability(config, fan, repeats, concurrency, as_json)
        return
    with (
        temporary_stack(config, ["noop", "echo"], "bench", workers=1, concurrency=concurrency) as stack,
        err.status("measuring…") as status,
    ):
        app = create_app(stack.settings)
        report = {} if footprint_only else run_engine_bench(app, fan, length, repeats, on_step=status.update)
        report["footprint"] = run_footprint_bench(app, repeats, on_step=status.update)
    report["worker_concurrency"] = concurrency
    if as_json:
        emit_json(report)
        return
    if not footprint_only:
        out.print(_speed_table(report, repeats, concurrency, fan, length))
    out.print(footprint_table(report["footprint"]))


def _speed_table(report: dict[str, Any], repeats: int, concurrency: int, fan: int, length: int) -> Table:
    view = Table(title=f"coditect vs plain Celery (medians of {repeats}, concurrency {concurrency})")
    for column in ("figure", "plain Celery", "coditect", "ratio"):
        view.add_column(column, justify="left" if column == "figure" else "right")
    f, c = report["fanout"], report["chain"]
    view.add_row(
        f"fan-out of {fan} noop: tasks/s",
        str(f["celery_tasks_per_s"]),
        str(f["coditect_tasks_per_s"]),
        f"{f['throughput_ratio']:.2f}",
    )
    view.add_row(
        f"chain of {length} noop: seconds",
        str(c["celery_seconds"]),
        str(c["coditect_seconds"]),
        f"{c['speed_ratio']:.2f}",
    )
    view.add_row(
        "chain: ms per edge (p50 / p99)",
        f"{c['celery_ms_per_hop']:.2f} (mean per hop)",
        f"{c['edge_latency_p50_ms']:.2f} / {c['edge_latency_p99_ms']:.2f}",
        "",
    )
    d = report["dispatch"]
    view.add_row(
        f"dispatch of a 1-node run: ms (p50 / p99, {d['runs']} runs)",
        f"{d['celery_p50_ms']:.2f} / {d['celery_p99_ms']:.2f}",
        f"{d['coditect_p50_ms']:.2f} / {d['coditect_p99_ms']:.2f}",
        f"{d['celery_p50_ms'] / d['coditect_p50_ms']:.2f}",
    )
    sub = report["submit"]
    view.add_row(
        f"submit a 4-node diamond: ms (p50 / p99, {sub['calls']} calls)",
        f"{sub['celery_p50_ms']:.2f} / {sub['celery_p99_ms']:.2f}",
        f"{sub['coditect_p50_ms']:.2f} / {sub['coditect_p99_ms']:.2f}",
        f"{sub['celery_p50_ms'] / sub['coditect_p50_ms']:.2f}",
    )
    cap = report["capacity"]
    view.add_row(
        f"capacity: diamond runs/s ({cap['runs']} at once)",
        str(cap["celery_diamonds_per_s"]),
        str(cap["coditect_diamonds_per_s"]),
        f"{cap['ratio']:.2f}",
    )
    view.add_row("validate + plan 10,000 nodes: s", "", str(report["validate_10k_seconds"]), "")
    return view


def footprint_table(report: dict[str, Any]) -> Table:
    """What a node costs Redis, against plain Celery (``footprint.run_footprint_bench``)."""
    view = Table(title=f"what a node costs Redis (medians of {report['repeats']} repetitions)")
    for column in ("figure", "plain Celery", "coditect", "ratio"):
        view.add_column(column, justify="left" if column == "figure" else "right")
    q, cpu, edge = report["queued"], report["cpu"], report["fanout_edge"]
    view.add_row(
        f"memory per queued node, fan-out of {q['nodes']:,}: bytes",
        str(round(q["celery_bytes_per_1000"] / 1000)),
        str(round(q["coditect_bytes_per_1000"] / 1000)),
        f"{q['ratio']:.2f}",
    )
    view.add_row(
        "memory per queued single-node run: bytes",
        str(q["celery_bytes_per_single"]),
        str(q["coditect_bytes_per_single"]),
        f"{q['single_ratio']:.2f}",
    )
    retired = report["retired_diamond"]
    view.add_row(f"a retired diamond run: bytes ({retired['keys']} keys)", "", str(retired["bytes"]), "")
    view.add_row(
        f"Redis CPU per node, fan-out of {cpu['nodes']:,}: µs",
        str(cpu["celery_us_per_node"]),
        str(cpu["coditect_us_per_node"]),
        f"{cpu['ratio']:.2f}",
    )
    narrow, broad = edge["widths"]
    view.add_row(
        f"fan-out edge p50, {narrow:,} wide / {broad:,} wide: ms",
        "",
        " / ".join(f"{ms:.2f}" for ms in edge["p50_ms"]),
        f"{edge['ratio']:.2f}",
    )
    return view


def _bench_observability(config: Settings, fan: int, repeats: int, concurrency: int, as_json: bool) -> None:
    """Tracing on vs off, on fresh noop pools that alternate over one embedded Redis."""
    from ..app import create_app
    from ..bench import run_observability_bench
    from ..embedded import WorkerProcess
    from ..observability import tracing
    from ..observability.receiver import OtlpReceiver
    from ..registry import Registry

    receiver = OtlpReceiver().start()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint  # the producer's root spans
    tracing.setup_tracing("coditect-bench")
    try:
        with temporary_stack(config, ["noop"], "bench", workers=0) as stack:
            registry = Registry.from_url(stack.settings.state_url)

            def start_pool(traced: bool) -> Any:
                env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint} if traced else {"OTEL_SDK_DISABLED": "true"}
                pool = WorkerProcess(stack.settings, ["noop"], concurrency=concurrency, extra_env=env).start()
                pool.wait_ready(registry)
                return pool.stop

            with err.status("measuring…") as status:
                report = run_observability_bench(
                    create_app(stack.settings),
                    start_pool,
                    fan=fan,
                    repeats=repeats,
                    on_step=lambda step: status.update(step),
                )
    finally:
        receiver.stop()
    report["spans_received"] = len(receiver.snapshot())
    if as_json:
        emit_json(report)
        return
    out.print(
        f"fan-out of {fan} noop, medians of {repeats}: tracing off {report['tracing_off_tasks_per_s']} tasks/s, "
        f"on {report['tracing_on_tasks_per_s']} tasks/s, ratio {report['throughput_ratio']:.2f} "
        f"({report['spans_received']} spans received)"
    )
