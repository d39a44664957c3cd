"""Artifacts in S3: node results too large for Redis, files agents write, and fenced shared objects.

With ``CODITECT_ARTIFACTS_URL=s3://bucket/prefix`` (boto3, the standard ``AWS_*`` variables,
``AWS_ENDPOINT_URL`` included) a node result larger than ``CODITECT_ARTIFACT_THRESHOLD`` bytes is
written to ``<prefix>/runs/<run>/<node>/<attempt>/result.json`` (a foreach item's under
``<node>/items/<k>/``) and Redis holds only a reference, ``{"artifact": "s3://…", "bytes": N}``,
which is what the run document shows. Downstream agents still receive the value: ``resolve``
fetches a reference once per call, but only one at the exact place this run (or the run it
retries) wrote that predecessor's result: a value that merely looks like a reference is passed on
as it is. Every object of an attempt is written with ``If-None-Match: *``, so nothing overwrites
it.

Shared objects (``put(name, data, fence=token)``) are fenced by the lock token of their writer.
S3's ``If-Match`` compares ETags, which are digests of the content, so a paused holder whose
bytes equal the current ones would pass it; instead every fenced write is a new immutable object
``shared/<name>/<token>-<time>``, and the newest is the one with the highest token (``get``). A
write with a token lower than one already there is refused; one that raced past that check lands
below the newer object and is never read as the newest.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, InvalidArgumentError, StaleFenceError
from ._client import settings_for

#: Bytes read per chunk while fetching an object (spooled to disk past ``SPOOL_BYTES``).
CHUNK = 1024 * 1024
SPOOL_BYTES = 8 * 1024 * 1024
#: The result file of an attempt; agents' own files go under ``files/`` beside it.
RESULT_FILE = "result.json"
NAME = re.compile(r"^[A-Za-z0-9._-][A-Za-z0-9._/-]{0,511}$")


class ArtifactStore:
    """The bucket and prefix of ``CODITECT_ARTIFACTS_URL``, over one boto3 client."""

    def __init__(self, url: str) -> None:
        import boto3

        parts = urlsplit(url)
        self.bucket = parts.netloc
        self.prefix = "/".join(p for p in parts.path.split("/") if p)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.s3 = boto3.session.Session().client("s3")  # a session per store: the default one is not thread-safe
        self._result = re.compile(
            rf"^{re.escape(self.url)}/runs/(?P<run>[0-9a-f]+)/(?P<node>[^/]+)(?:/items/\d+)?/\d+/{RESULT_FILE}$"
        )

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def url_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put_new(self, name: str, data: bytes) -> str:
        """Write an object that must not exist yet (``If-None-Match: *``); its URL."""
        key = self.key(name)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
        return self.url_of(key)

    def read(self, url: str) -> Any:
        """The JSON value of an object, streamed through a spooled file (memory for small ones)."""
        parts = urlsplit(url)
        body = self.s3.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))["Body"]
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            for chunk in body.iter_chunks(CHUNK):
                spool.write(chunk)
            spool.seek(0)
            return json.load(spool)

    def offload(self, result: Any, run_id: str, path: str, attempt: int, threshold: int) -> Any:
        """``result`` itself, or a reference to it once written, if its JSON is over ``threshold`` bytes."""
        try:
            encoded = json.dumps(result, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError):
            return result  # not JSON: the engine fails the node with the reason
        if len(encoded) <= threshold:
            return result
        url = self.put_new(f"runs/{run_id}/{path}/{attempt}/{RESULT_FILE}", encoded)
        return {"artifact": url, "bytes": len(encoded)}

    def resolve(self, value: Any, runs: set[str], node: str | None) -> Any:
        """``value`` with the references to results that node ``node`` (None: any) of one of
        ``runs`` wrote replaced by their values (a list's elements too: a foreach's items)."""
        if self._reference(value, runs, node):
            return self.read(value["artifact"])
        if isinstance(value, list) and any(self._reference(v, runs, node) for v in value):
            return [self.resolve(v, runs, node) for v in value]
        return value

    def _reference(self, value: Any, runs: set[str], node: str | None) -> bool:
        if not (
            isinstance(value, dict) and value.keys() == {"artifact", "bytes"} and isinstance(value["artifact"], str)
        ):
            return False
        found = self._result.match(value["artifact"])
        return found is not None and found["run"] in runs and (node is None or found["node"] == node)

    def put_fenced(self, name: str, data: bytes, fence: int) -> str:
        """Write shared object ``name`` as token ``fence``'s version; ``StaleFenceError`` if a
        higher token has written it. Older versions are deleted once the new one is in place."""
        base = f"shared/{name}/"
        versions = self._versions(base)
        newest = max((token for token, _ in versions), default=None)
        if newest is not None and fence < newest:
            raise StaleFenceError(self.url_of(self.key(base.rstrip("/"))), fence, newest)
        url = self.put_new(f"{base}{fence:020d}-{time.time_ns():020d}", data)
        for token, key in versions:
            if token < fence:
                self.s3.delete_object(Bucket=self.bucket, Key=key)
        return url

    def get_fenced(self, name: str) -> bytes | None:
        """The newest version of shared object ``name`` (the highest token's), or None."""
        versions = self._versions(f"shared/{name}/")
        if not versions:
            return None
        _, key = max(versions, key=lambda v: (v[0], v[1]))
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def _versions(self, base: str) -> list[tuple[int, str]]:
        found = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.key(base))
        for page in pages:
            for item in page.get("Contents", []):
                stamp = item["Key"].rsplit("/", 1)[-1]
                if re.fullmatch(r"\d{20}-\d{20}", stamp):
                    found.append((int(stamp[:20]), item["Key"]))
        return found


@dataclass(frozen=True)
class NodeArtifacts:
    """``call.artifacts``: files of one attempt, under ``runs/<run>/<node>/<attempt>/files/``."""

    store: ArtifactStore | None
    run_id: str
    node_id: str
    attempt: int

    def put(self, name: str, data: bytes | str) -> str:
        """Write ``data`` as this attempt's file ``name``; its ``s3://`` URL. A name is written once."""
        if self.store is None:
            raise ConfigError("CODITECT_ARTIFACTS_URL", "not set: agents cannot write artifacts without it")
        _check_name(name)
        raw = data.encode() if isinstance(data, str) else data
        return self.store.put_new(f"runs/{self.run_id}/{self.node_id}/{self.attempt}/files/{name}", raw)


_STORES: dict[tuple[int, str], ArtifactStore] = {}
_STORES_LOCK = threading.Lock()


def store_for(settings: Any) -> ArtifactStore | None:
    """This process's store of ``settings.artifacts_url`` (None when unset)."""
    url = settings.artifacts_url
    if url is None:
        return None
    with _STORES_LOCK:
        key = (os.getpid(), url)  # a forked pool process makes its own client
        if key not in _STORES:
            _STORES[key] = ArtifactStore(url)
        return _STORES[key]


def _store(settings: Any) -> ArtifactStore:
    store = store_for(settings_for(settings))
    if store is None:
        raise ConfigError("CODITECT_ARTIFACTS_URL", "not set: there is nowhere to keep artifacts")
    return store


def put(name: str, data: bytes | str, *, fence: int, settings: Any = None) -> str:
    """Write shared object ``name`` as the holder of fencing token ``fence`` (see the module); its URL."""
    _check_name(name)
    return _store(settings).put_fenced(name, data.encode() if isinstance(data, str) else data, int(fence))


def get(name: str, *, settings: Any = None) -> bytes | None:
    """The newest version of shared object ``name``, or None."""
    _check_name(name)
    return _store(settings).get_fenced(name)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME.match(name) or ".." in name.split("/") or "//" in name:
        raise InvalidArgumentError(
            f"an artifact name is 1 to 512 of A-Z a-z 0-9 . _ - /, relative, without '..': {name!r}"
        )
