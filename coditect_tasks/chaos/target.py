"""What ``coditect-tasks chaos`` acts on besides its own probe workers: the state Redis.

A target gives the settings its probe workers and runs use, and what it can do to Redis: stop it
for a while (SIGSTOP, then SIGCONT) and restart it. A fault a target cannot cause is skipped, and
says why. The plug-in point is this protocol: an operator's deployment that is neither of these
(a managed Redis, a Kubernetes pod) is reached by a class of their own with the same methods.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..embedded import LocalStack
from ..errors import ConfigError, EmbeddedStackError
from ..redis_server import RedisServer
from ..settings import Settings


class Target(Protocol):
    """A deployment under test: its settings, and what can be done to its Redis."""

    name: str
    settings: Settings
    #: Why Redis cannot be stopped or restarted here (None: it can).
    cannot_pause: str | None
    cannot_restart: str | None

    def pause_redis(self) -> None: ...
    def resume_redis(self) -> None: ...
    def restart_redis(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class EmbeddedTarget:
    """A fresh embedded stack of the command's own: a Redis (every write fsynced) and a recorder,
    removed with everything they wrote when the command ends."""

    name: str = "embedded"
    cannot_pause: str | None = None
    cannot_restart: str | None = None
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="coditect-chaos-")))

    def __post_init__(self) -> None:
        base = Settings(home=self.folder / "home", log_level="WARNING", embedded_fsync="always")
        self.stack = LocalStack(base, [], workers=0, data_dir=self.folder / "redis", services=("recorder",))
        self.stack.start()
        self.settings = self.stack.settings

    @property
    def redis(self) -> RedisServer:
        assert self.stack.redis is not None
        return self.stack.redis

    def pause_redis(self) -> None:
        os.kill(self._pid(), signal.SIGSTOP)

    def resume_redis(self) -> None:
        os.kill(self._pid(), signal.SIGCONT)

    def _pid(self) -> int:
        assert self.redis.proc is not None
        return self.redis.proc.pid

    def restart_redis(self) -> None:
        """Stop Redis (it writes its data down) and start it again on the same port and data."""
        self.redis.stop()
        self.redis.start()

    def close(self) -> None:
        self.stack.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class ProcessTarget:
    """A deployment reached through its settings, whose Redis runs as process ``pid`` on this host
    (0: not known here, so no fault acts on Redis)."""

    settings: Settings
    pid: int = 0
    name: str = "processes"
    cannot_pause: str | None = None
    cannot_restart: str | None = "a Redis process cannot be restarted from here: use --compose or a target of your own"

    def __post_init__(self) -> None:
        if not self.pid:
            self.cannot_pause = "no Redis process to stop: give --redis-pid"

    def pause_redis(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume_redis(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def restart_redis(self) -> None:
        raise EmbeddedStackError(str(self.cannot_restart))

    def close(self) -> None:
        pass


@dataclass
class ComposeTarget:
    """A Docker Compose project (``docker compose -p PROJECT``): its ``service`` paused, unpaused
    and restarted through the Docker CLI."""

    settings: Settings
    project: str
    service: str = "redis"
    name: str = "compose"
    cannot_pause: str | None = None
    cannot_restart: str | None = None

    def __post_init__(self) -> None:
        if shutil.which("docker") is None:
            raise ConfigError("--compose", "the docker command is not on PATH")

    def command(self, action: str) -> list[str]:
        return ["docker", "compose", "-p", self.project, action, self.service]

    def _run(self, action: str) -> None:
        done = subprocess.run(self.command(action), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise EmbeddedStackError(f"docker compose {action} {self.service}: {done.stderr.strip()[:200]}")

    def pause_redis(self) -> None:
        self._run("pause")

    def resume_redis(self) -> None:
        self._run("unpause")

    def restart_redis(self) -> None:
        self._run("restart")

    def close(self) -> None:
        pass
