"""A real Redis Cluster of child processes on 127.0.0.1: three primaries, each with its replicas.

For tests and benches of the cluster path (``cluster.py``). Each node is a ``RedisServer`` with
cluster mode on and its own data folder; the cluster is formed with plain cluster commands
(``CLUSTER ADDSLOTS``, ``MEET``, ``REPLICATE``), so no ``redis-cli`` is needed. A primary whose
peers cannot reach it for ``node_timeout_ms`` is failed over to its replica.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import redis

from .errors import EmbeddedStackError
from .redis_server import RedisServer, free_port

SLOTS = 16384
#: How far above its port a node's cluster bus listens.
BUS_OFFSET = 10000


class ClusterGroup:
    """``primaries`` primaries with ``replicas`` replicas each, formed into one cluster. A primary
    that fails over keeps a replica (so writes that wait for one go on) only with two."""

    def __init__(self, data_dir: Path, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        self.data_dir = Path(data_dir)
        self.password = secrets.token_urlsafe(18)
        config = (
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {node_timeout_ms}",
            f"masterauth {self.password}",
        )
        self.servers = [
            RedisServer(self.data_dir / f"node-{i}", password=self.password, config=config)
            for i in range(primaries * (1 + replicas))
        ]
        self.primaries = primaries

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{server.port}" for server in self.servers[: self.primaries])
        return f"redis+cluster://:{self.password}@{hosts}"

    def start(self, timeout: float = 30.0) -> ClusterGroup:
        try:
            for server in self.servers:
                # each node's bus listens on its port + 10,000 (redis-server 6 has no cluster-port): a
                # port drawn with that one free too, just before the node takes both
                server.port = free_port(beside=BUS_OFFSET)
                server.start()
            self._form(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self, deadline: float) -> None:
        first, *others = self.servers
        share = SLOTS // self.primaries
        for index, server in enumerate(self.servers[: self.primaries]):
            last = SLOTS - 1 if index == self.primaries - 1 else (index + 1) * share - 1
            self._ask(server, "CLUSTER", "ADDSLOTS", *range(index * share, last + 1))
        for server in others:
            self._ask(first, "CLUSTER", "MEET", "127.0.0.1", server.port)
        self._until(deadline, "every node to know the others", lambda: all(self._known(s) for s in self.servers))
        for number, replica in enumerate(self.servers[self.primaries :]):
            primary = self.servers[number % self.primaries]
            node_id = self._ask(primary, "CLUSTER", "MYID")
            self._until(deadline, "a replica to take its primary", lambda r=replica, n=node_id: self._replicate(r, n))
        self._until(deadline, "the cluster to be ok", self.healthy)

    def healthy(self) -> bool:
        """Every slot served and every primary's replica streaming from it, as every live node sees it."""
        for server in self.servers:
            if server.proc is None:
                continue
            try:
                info = self._ask(server, "CLUSTER", "INFO")
                replication = self.client(server).info("replication")
            except redis.RedisError:
                return False
            if "cluster_state:ok" not in str(info):
                return False
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return False
        return True

    def primary_of(self, key: str) -> RedisServer:
        """The server whose node serves ``key``'s slot now."""
        slot = int(self._ask(self._live(), "CLUSTER", "KEYSLOT", key))
        for entry in self._ask(self._live(), "CLUSTER", "SLOTS"):
            if entry[0] <= slot <= entry[1]:
                return next(s for s in self.servers if s.port == int(entry[2][1]))
        raise EmbeddedStackError(f"no node serves slot {slot}")

    def _live(self) -> RedisServer:
        return next(s for s in self.servers if s.proc is not None)

    def _known(self, server: RedisServer) -> bool:
        nodes = str(self._ask(server, "CLUSTER", "NODES")).splitlines()
        return len(nodes) == len(self.servers) and not any("handshake" in line for line in nodes)

    def _replicate(self, replica: RedisServer, node_id: str) -> bool:
        try:
            self._ask(replica, "CLUSTER", "REPLICATE", node_id)
        except redis.ResponseError:
            return False  # it has not heard of that primary yet
        return True

    def _until(self, deadline: float, what: str, check: Any) -> None:
        while not check():
            if time.monotonic() > deadline:
                raise EmbeddedStackError(f"the cluster did not form: waited for {what}")
            time.sleep(0.05)

    def client(self, server: RedisServer) -> redis.Redis:
        """A plain client of one node (the caller closes it)."""
        return redis.Redis(port=server.port, password=self.password, socket_timeout=2, decode_responses=True)

    def _ask(self, server: RedisServer, *command: Any) -> Any:
        client = self.client(server)
        try:
            return client.execute_command(*command)  # type: ignore[no-untyped-call]
        finally:
            client.close()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
