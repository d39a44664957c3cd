"""A Redis primary watched by Sentinel: its URL, and what redis-py, kombu and Celery need to follow it.

``redis+sentinel://[:password@]host:port[,host:port...]/service[/db][?sentinel_password=...]``
names the Sentinels (any one answering is enough) and the service they watch. Every client asks
them for the current primary, and again after a failover: the state store through redis-py's
``Sentinel``, the broker and the result backend through kombu's and Celery's ``sentinel://``
transports. The password is the primary's (and its replicas'); Sentinels that want one of their
own get ``sentinel_password``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

#: The URL scheme of a Sentinel-watched Redis.
SCHEME = "redis+sentinel"


class SentinelUrlError(ValueError):
    """A ``redis+sentinel://`` URL that does not say where the Sentinels are or what they watch."""


@dataclass(frozen=True)
class SentinelUrl:
    """The parts of a ``redis+sentinel://`` URL."""

    hosts: tuple[tuple[str, int], ...]
    service: str
    password: str | None = None
    db: int = 0
    sentinel_password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        """``SentinelUrlError`` (one line, no password) for a URL that is not of this form."""
        parts = urlsplit(url)
        if parts.scheme != SCHEME:
            raise SentinelUrlError(f"the scheme must be {SCHEME}://")
        auth, _, hostlist = parts.netloc.rpartition("@")
        password = unquote(auth.partition(":")[2]) if auth else None
        hosts = parse_hosts(hostlist, "Sentinel", SentinelUrlError)
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise SentinelUrlError("no service name: end the URL with /<service>, e.g. /mymaster")
        if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()) or parts.fragment:
            raise SentinelUrlError("the path must be /<service>[/<db>]")
        query = parse_qs(parts.query)
        unknown = set(query) - {"sentinel_password"}
        if unknown:
            raise SentinelUrlError(f"unknown parameter(s) {', '.join(sorted(unknown))}")
        sentinel_password = query.get("sentinel_password", [None])[0]
        return cls(hosts, path[0], password or None, int(path[1]) if len(path) == 2 else 0, sentinel_password)

    @property
    def sentinel_kwargs(self) -> dict[str, Any]:
        """How to reach the Sentinels themselves."""
        return {"password": self.sentinel_password} if self.sentinel_password else {}

    def kombu_url(self) -> str:
        """The same Redis as kombu's and Celery's ``sentinel://`` transports take it: one URL per
        Sentinel, ``;``-separated, each carrying the primary's password and the database."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return ";".join(f"sentinel://{auth}{host}:{port}/{self.db}" for host, port in self.hosts)

    def transport_options(self) -> dict[str, Any]:
        """kombu's (and Celery's result backend's) options for it: which service to follow."""
        options: dict[str, Any] = {"master_name": self.service}
        if self.sentinel_kwargs:
            options["sentinel_kwargs"] = self.sentinel_kwargs
        return options


def parse_hosts(hostlist: str, what: str, error: type[ValueError]) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` as pairs; ``error`` names the first that is not one (never echoing
    the URL: a password may hide there)."""
    hosts = []
    for number, item in enumerate(hostlist.split(","), 1):
        host, _, port = item.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # [::1]:26379
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise error(f"{what} {number} is not host:port (escape a '/' in the password as %2F)")
        hosts.append((host, int(port)))
    return tuple(hosts)


def is_sentinel(url: str | None) -> bool:
    return bool(url) and urlsplit(str(url)).scheme == SCHEME


def celery_form(url: str, broker: bool = False) -> tuple[str, dict[str, Any]]:
    """``url`` as Celery and kombu take it, with the transport options it needs (none for a plain URL).

    A ``broker`` keeps no copy of unacknowledged messages on Sentinel (kombu's ack emulation): its
    restore of that copy, run as a worker closes its connection to a primary that died, crashed the
    worker in one failover in three. DAG nodes do not need it (the engine finds a message a dead
    worker took: reap.lua); a plain Celery call to an agent is then not redelivered after its worker
    is killed."""
    if not is_sentinel(url):
        return url, {}
    where = SentinelUrl.parse(url)
    return where.kombu_url(), {**where.transport_options(), **({"ack_emulation": False} if broker else {})}
