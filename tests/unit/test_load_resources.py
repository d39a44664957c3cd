"""The load command's slope test: a resource that reaches a plateau passes, one that keeps growing fails."""

from __future__ import annotations

import random
from pathlib import Path

from coditect_tasks.load.report import drift
from coditect_tasks.load.resources import Sample, growth, per_run_held, still_rising, write_plot, write_timeline


def _samples(values: list[float]) -> list[Sample]:
    return [
        Sample(at=1000.0 + 5 * i, redis_bytes=int(v), redis_keys=10, worker_rss=int(v), worker_fds=20)
        for i, v in enumerate(values)
    ]


def test_a_plateau_with_noise_does_not_grow() -> None:
    noise = random.Random(7)
    rising_then_flat = [10e6 + min(i, 30) * 1e6 + noise.uniform(-3e5, 3e5) for i in range(120)]
    value = growth(_samples(rising_then_flat), "redis_bytes")
    assert value is not None and abs(value) < 0.02


def test_a_straight_line_keeps_growing() -> None:
    leak = [28e6 + i * 1.3e6 for i in range(120)]  # the seed's soak: 16 MB a minute
    value = growth(_samples(leak), "redis_bytes")
    assert value is not None and value > 0.5


def test_only_a_sustained_rise_is_a_leak() -> None:
    noise = random.Random(3)
    leak = [28e6 + i * 1.3e6 + noise.uniform(-4e6, 4e6) for i in range(120)]
    assert still_rising(_samples(leak), "redis_bytes", 0.10)
    # a plateau that follows the load: flat, then a late bump of 17 % (seen in a short soak)
    bump = [11.5e6 + noise.uniform(-3e5, 3e5) for i in range(100)] + [13.3e6] * 20
    assert (growth(_samples(bump), "redis_bytes") or 0) > 0.10
    assert not still_rising(_samples(bump), "redis_bytes", 0.10)


def test_too_short_a_run_is_not_judged() -> None:
    assert growth(_samples([1, 2, 3, 4, 5, 6]), "worker_rss") is None


def test_the_timeline_puts_resources_beside_latency_and_the_plot_draws_them(tmp_path: Path) -> None:
    history = tmp_path / "locust_stats_history.csv"
    history.write_text(
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%\n"
        "1000,5,,Aggregated,9.5,0,12,13,14,15,16,17,18,19\n"
        "1010,5,,Aggregated,10.5,0,22,23,24,25,26,27,28,29\n"
    )
    samples = _samples([5e6, 6e6, 7e6])
    write_timeline(samples, history, tmp_path / "timeline.csv")
    rows = (tmp_path / "timeline.csv").read_text().splitlines()
    assert rows[0] == (
        "at,redis_bytes,redis_keys,worker_rss,worker_fds,redis_cpu,worker_cpu,host_cpu,requests_per_s,p50_ms,p95_ms,p99_ms"
    )
    assert rows[1].endswith(",9.5,12,17,19") and rows[3].endswith(",10.5,22,27,29")
    write_plot(samples, "steady", tmp_path / "resources.html")
    page = (tmp_path / "resources.html").read_text()
    assert page.count("<polyline") == 7 and "Redis used_memory (MB)" in page and "Worker CPU (cores)" in page


def _history(path: Path, rates: list[float]) -> None:
    """A Locust full history: one ``run`` row per second, ``rates[i]`` runs ending in second i."""
    total = 0.0
    with path.open("w") as handle:
        handle.write("Timestamp,Type,Name,Total Request Count\n")
        for second, rate in enumerate(rates):
            total += rate
            handle.write(f"{1000 + second},run,steady/diamond,{int(total)}\n")


def test_redis_is_judged_per_run_held_so_a_faster_stack_is_not_a_leak(tmp_path: Path) -> None:
    window, seconds = 100, 600
    rates = [10.0 if s < 300 else 14.0 for s in range(seconds)]  # the stack got faster half-way
    _history(tmp_path / "h.csv", rates)

    def held_at(at: float) -> float:  # runs that ended in the window before ``at``
        return sum(rates[max(0, int(at) - 1000 - window) : int(at) - 1000])

    plateau = [Sample(1000.0 + 5 * i, int(10_000 * held_at(1000 + 5 * i)), 0, 0, 0) for i in range(seconds // 5)]
    assert still_rising(plateau, "redis_bytes", 0.10)  # raw, the higher plateau looks like a leak
    per_run = per_run_held(plateau, tmp_path / "h.csv", window)
    assert per_run and not still_rising(per_run, "redis_bytes", 0.10)
    ended = [sum(rates[: 5 * i]) for i in range(seconds // 5)]  # plus 20 kB kept for every run ever ended
    leak = [Sample(s.at, s.redis_bytes + int(20_000 * e), 0, 0, 0) for s, e in zip(plateau, ended, strict=True)]
    assert still_rising(per_run_held(leak, tmp_path / "h.csv", window), "redis_bytes", 0.10)


def test_drift_compares_the_windowed_p99_of_the_first_and_last_sixth(tmp_path: Path) -> None:
    # 600 s of Locust history: dispatch p99 20 ms for the first 100 s, 30 ms in the middle, 25 ms for the last 100 s.
    lines = ["Timestamp,Type,Name,99%"]
    for second in range(601):
        p99 = 20 if second < 100 else 25 if second > 500 else 30
        lines += [f"{1000 + second},dispatch,soak/diamond,{p99}", f"{1000 + second},run,soak/diamond,N/A"]
    (tmp_path / "locust_stats_history.csv").write_text("\n".join(lines) + "\n")
    moved = drift(tmp_path / "locust", "dispatch")
    assert moved == {"window_s": 100, "first_ms": 20.0, "last_ms": 25.0, "ratio": 1.25}
    assert drift(tmp_path / "locust", "run") is None  # no value to judge
    assert drift(tmp_path / "absent", "dispatch") is None
