"""What a load test costs the stack over time: Redis memory and keys, worker memory and files, CPU.

A leak hides behind a passing latency figure. ``Sampler`` reads Redis (``INFO memory``,
``DBSIZE``, ``INFO cpu``), every local worker pool (its main process and pool children,
through psutil: RSS, open file descriptors, CPU time) and the machine's busy CPU every few
seconds, so a latency that drifts can be put beside what takes the cores; ``write_timeline``
puts the samples beside Locust's latency columns, ``write_plot`` draws them, and ``growth`` is
the slope test the load command fails on.
"""

from __future__ import annotations

import csv
import html
import socket
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import psutil
import redis

from ..registry import Registry

#: Seconds between two samples.
EVERY = 5.0


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the epoch
    redis_bytes: int
    redis_keys: int
    worker_rss: int  # bytes, every local worker process (pool children included)
    worker_fds: int
    # Cores busy since the previous sample (0 on the first): Redis with its AOF-rewrite
    # children, every local worker process, the whole machine.
    redis_cpu: float = 0.0
    worker_cpu: float = 0.0
    host_cpu: float = 0.0


class Sampler:
    """Samples the stack behind ``client`` when ``tick`` is called, at most every ``every`` s."""

    def __init__(self, client: redis.Redis, every: float = EVERY) -> None:
        self.client = client
        self.every = every
        self.samples: list[Sample] = []
        self._last = -every
        self._cpu: dict[str, float] = {}  # source -> CPU seconds at the previous sample
        self._cpu_at = 0.0

    def tick(self, elapsed: float) -> None:
        if elapsed - self._last >= self.every:
            self._last = elapsed
            self.samples.append(self.sample())

    def sample(self) -> Sample:
        rss = fds = 0
        cpu: dict[str, float] = {}
        for process in _worker_processes(self.client):
            try:
                rss += process.memory_info().rss
                fds += process.num_fds()
                times = process.cpu_times()
                cpu[f"worker:{process.pid}"] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # a pool child replaced between listing and reading
        used = self.client.info("cpu")
        cpu["redis"] = sum(
            float(used[k]) for k in ("used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children")
        )
        host = psutil.cpu_times()  # busy: what the kernel ran (guest time is inside user already)
        read_at = time.monotonic()  # with the machine's reading: a slow sample must not stretch its interval
        cpu["host"] = sum(getattr(host, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))
        cores = self._cores(cpu, read_at)
        return Sample(
            at=time.time(),
            redis_bytes=int(self.client.info("memory")["used_memory"]),
            redis_keys=int(self.client.dbsize()),
            worker_rss=rss,
            worker_fds=fds,
            redis_cpu=cores["redis"],
            worker_cpu=cores["worker"],
            host_cpu=cores["host"],
        )

    def _cores(self, cpu: dict[str, float], now: float) -> dict[str, float]:
        """Cores busy since the previous sample (read at monotonic ``now``), by source (``redis``,
        ``host``, and ``worker`` summing every ``worker:<pid>``); a process new since then counts
        from its start (its whole CPU time). All 0 on the first sample."""
        previous, elapsed = self._cpu, now - self._cpu_at
        self._cpu, self._cpu_at = cpu, now
        busy = {"redis": 0.0, "worker": 0.0, "host": 0.0}
        if not previous or elapsed <= 0:
            return busy
        for source, seconds in cpu.items():
            busy[source.partition(":")[0]] += seconds - previous.get(source, 0.0)
        return {name: round(max(spent, 0.0) / elapsed, 3) for name, spent in busy.items()}


def _worker_processes(client: redis.Redis) -> list[psutil.Process]:
    """Every process of the worker pools registered from this host."""
    here = socket.gethostname()
    found: list[psutil.Process] = []
    for info in Registry(client).workers():
        if info.hostname.rpartition("@")[2] != here or not psutil.pid_exists(info.pid):
            continue
        try:
            main = psutil.Process(info.pid)
            found += [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return found


def growth(samples: list[Sample], field: str) -> float | None:
    """How much ``field`` still grows over the second half of the run, relative to where that half
    starts: (fitted end - fitted start) / fitted start of a least-squares line through its samples.
    None with fewer than 4 samples in that half (too short to tell)."""
    half = samples[len(samples) // 2 :]
    if len(half) < 4:
        return None
    xs = [s.at - half[0].at for s in half]
    ys = [float(getattr(s, field)) for s in half]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    start = mean_y - slope * mean_x
    return slope * xs[-1] / start if start > 0 else None


def still_rising(samples: list[Sample], field: str, limit: float) -> bool:
    """The leak test: ``field`` grows by more than ``limit`` over the second half (``growth``) and
    its mean rises by more than a quarter of ``limit`` from each quarter of the run to the next
    through that half. A plateau whose level follows the load's ups and downs passes; a straight
    line, however noisy, does not."""
    value = growth(samples, field)
    if value is None or value <= limit:
        return False
    size = len(samples) // 4
    means = [sum(float(getattr(s, field)) for s in samples[q * size : (q + 1) * size]) / size for q in (1, 2, 3)]
    step = 1 + limit / 4
    return means[1] > means[0] * step and means[2] > means[1] * step


def per_run_held(samples: list[Sample], stats_history: Path, window: float) -> list[Sample]:
    """The samples with ``redis_bytes`` divided by the runs that ended in the ``window`` seconds
    before each: what Redis holds per run it is meant to hold (running, plus finished within the
    retention window). Its level does not follow the achieved rate, so a plateau that rises because
    the stack got faster is not a leak, while state kept past the window still is. Samples before
    a full window, or with no run ended in it, are left out."""
    ended = _runs_ended(stats_history)
    if not ended:
        return []
    out = []
    for sample in samples:
        if sample.at - window < min(ended):
            continue
        count = _count_at(ended, sample.at) - _count_at(ended, sample.at - window)
        if count > 0:
            out.append(replace(sample, redis_bytes=sample.redis_bytes // count))
    return out


def _runs_ended(stats_history: Path) -> dict[int, int]:
    """Second → runs ended so far, from Locust's history (``run`` rows; else half the aggregate)."""
    if not stats_history.exists():
        return {}
    runs: dict[int, int] = {}
    both: dict[int, int] = {}
    with stats_history.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("Type") == "run":
                runs[int(row["Timestamp"])] = int(row["Total Request Count"])
            elif row.get("Name") == "Aggregated":
                both[int(row["Timestamp"])] = int(row["Total Request Count"]) // 2
    return runs or both


def _count_at(ended: dict[int, int], at: float) -> int:
    return max((count for second, count in ended.items() if second <= at), default=0)


def write_timeline(samples: list[Sample], stats_history: Path, path: Path) -> None:
    """One CSV row per sample: the resources beside Locust's latest aggregated latency columns."""
    latency = _latency_by_second(stats_history)
    names = [f.name for f in fields(Sample)]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*names, "requests_per_s", "p50_ms", "p95_ms", "p99_ms"])
        for sample in samples:
            row = latency.get(max((t for t in latency if t <= sample.at), default=-1), ["", "", "", ""])
            writer.writerow([*asdict(sample).values(), *row])


def _latency_by_second(stats_history: Path) -> dict[int, list[str]]:
    if not stats_history.exists():
        return {}
    table: dict[int, list[str]] = {}
    with stats_history.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("Name") == "Aggregated":
                table[int(row["Timestamp"])] = [row["Requests/s"], row["50%"], row["95%"], row["99%"]]
    return table


def write_plot(samples: list[Sample], title: str, path: Path) -> None:
    """A self-contained HTML page: one line chart (inline SVG) per resource over time."""
    charts = [
        ("Redis used_memory (MB)", [s.redis_bytes / 1e6 for s in samples]),
        ("Redis keys", [float(s.redis_keys) for s in samples]),
        ("Worker RSS (MB)", [s.worker_rss / 1e6 for s in samples]),
        ("Worker open files", [float(s.worker_fds) for s in samples]),
        ("Redis CPU (cores)", [s.redis_cpu for s in samples]),
        ("Worker CPU (cores)", [s.worker_cpu for s in samples]),
        ("Machine CPU (cores busy)", [s.host_cpu for s in samples]),
    ]
    seconds = [s.at - samples[0].at for s in samples] if samples else []
    body = "".join(_chart(name, seconds, values) for name, values in charts)
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:1em}"
        "figcaption{font-weight:bold}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{len(samples)} samples, one every {EVERY:g} s</p>{body}</body></html>"
    )


def _chart(name: str, xs: list[float], ys: list[float], width: int = 520, height: int = 220) -> str:
    if len(xs) < 2:
        return f"<figure><figcaption>{html.escape(name)}</figcaption><p>too few samples</p></figure>"
    pad = 40
    low, high = min(ys), max(ys)
    span_y = (high - low) or max(abs(high), 1.0)
    span_x = xs[-1] or 1.0
    points = " ".join(
        f"{pad + x / span_x * (width - 2 * pad):.1f},{height - pad - (y - low) / span_y * (height - 2 * pad):.1f}"
        for x, y in zip(xs, ys, strict=True)
    )
    return (
        f"<figure><figcaption>{html.escape(name)}</figcaption>"
        f"<svg width='{width}' height='{height}' role='img' aria-label='{html.escape(name)}'>"
        f"<rect x='{pad}' y='{pad}' width='{width - 2 * pad}' height='{height - 2 * pad}' fill='#f6f6f6'/>"
        f"<polyline fill='none' stroke='#1f6feb' stroke-width='2' points='{points}'/>"
        f"<text x='{pad}' y='{pad - 8}' font-size='12'>{high:.1f}</text>"
        f"<text x='{pad}' y='{height - pad + 16}' font-size='12'>{low:.1f}</text>"
        f"<text x='{width - pad}' y='{height - pad + 16}' font-size='12' text-anchor='end'>{span_x:.0f} s</text>"
        "</svg></figure>"
    )
