"""A real ``rabbitmq-server`` child process for tests and benchmarks.

Debian's package, run as a plain process (not its service) with its own data directory, its
AMQP, distribution and port-mapper (epmd) ports on 127.0.0.1, no plugins, and a consumer
timeout above the longest agent time limit (RabbitMQ closes the channel of a delivery left
unacknowledged longer; with late acks a long agent call is one). Its default ``guest`` user
may only connect from loopback, where it listens.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

from .agents import MAX_TIMEOUT
from .broker import ping
from .errors import BrokerUnreachableError, EmbeddedStackError
from .redis_server import free_port, stop_process

#: The server's start script as Debian installs it (``/usr/sbin/rabbitmq-server`` switches to
#: the ``rabbitmq`` user and its system-wide data; this one runs as the caller).
SERVER_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
#: Milliseconds a delivery may stay unacknowledged: past the longest time limit an agent may have.
CONSUMER_TIMEOUT_MS = int((MAX_TIMEOUT + 3600) * 1000)


def rabbitmq_installed() -> bool:
    return os.access(SERVER_SCRIPT, os.X_OK)


class RabbitServer:
    """``rabbitmq-server`` on 127.0.0.1 with everything it writes under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.port = free_port()
        self.epmd_port = free_port()
        self.dist_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _environment(self) -> dict[str, str]:
        d = self.directory.resolve()
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(d),  # its Erlang cookie
            "RABBITMQ_NODENAME": f"coditect-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_LOGS": str(d / "log" / "rabbit.log"),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),  # .conf is appended
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),  # none: not the system's
        }

    def start(self, timeout: float = 90.0) -> RabbitServer:
        """Start the server and return once it accepts an AMQP connection."""
        if not rabbitmq_installed():
            raise EmbeddedStackError(f"{SERVER_SCRIPT} not found (apt-get install rabbitmq-server)")
        d = self.directory
        (d / "log").mkdir(parents=True, exist_ok=True)
        (d / "enabled_plugins").write_text("[].\n")
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nconsumer_timeout = {CONSUMER_TIMEOUT_MS}\n"
        )
        (d / "advanced.config").write_text("[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].\n")
        with open(d / "server.out", "wb") as out:
            self.proc = subprocess.Popen(
                [str(SERVER_SCRIPT)],
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise EmbeddedStackError(f"rabbitmq-server exited with {self.proc.returncode}; see {d / 'log'}")
            with contextlib.suppress(BrokerUnreachableError):
                ping(self.url, deadline=1.0)
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedStackError(f"rabbitmq-server did not accept connections within {timeout:.0f} s")
            time.sleep(0.25)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout)
            self.proc = None
        # the port mapper daemonizes out of the server's process group: ask it to go
        env = self._environment()
        for _ in range(20):
            done = subprocess.run(["epmd", "-kill"], env=env, capture_output=True, check=False)
            if done.returncode == 0 or b"Killing not allowed" not in done.stdout + done.stderr:
                return
            time.sleep(0.25)

    def __enter__(self) -> RabbitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
