"""A Redis Cluster as the state store: its URL, and the client redis-py routes by hash slot.

``redis+cluster://[[user]:password@]host:port[,host:port...]`` (``rediss+cluster://`` for TLS)
names some of the cluster's nodes; the client learns the rest, and each slot's primary, from
any one that answers, and again after a failover. Every key of the platform carries one hash
tag (``keys.PREFIX``), so every script runs on the one node that holds that slot. Kombu has no
Redis Cluster transport: the broker is RabbitMQ or another Redis (``CODITECT_BROKER_URL``), and
node messages reach it through the outbox (``worker/outbox.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .sentinel import parse_hosts

#: The URL schemes of a Redis Cluster: plain and TLS.
SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})


class ClusterUrlError(ValueError):
    """A ``redis+cluster://`` URL that does not say where the cluster's nodes are."""


@dataclass(frozen=True)
class ClusterUrl:
    """The parts of a ``redis+cluster://`` URL."""

    hosts: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> ClusterUrl:
        """``ClusterUrlError`` (one line, no password) for a URL that is not of this form."""
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ClusterUrlError("the scheme must be redis+cluster:// or rediss+cluster://")
        auth, _, hostlist = parts.netloc.rpartition("@")
        user, _, password = auth.partition(":")
        hosts = parse_hosts(hostlist, "node", ClusterUrlError)
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ClusterUrlError("a cluster URL ends after its nodes: a cluster has one database and no options")
        return cls(hosts, unquote(user) or None, unquote(password) or None, parts.scheme == "rediss+cluster")


def is_cluster(url: str | None) -> bool:
    return bool(url) and urlsplit(str(url)).scheme in SCHEMES
