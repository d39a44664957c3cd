"""Artifacts in S3: node results too large for Redis, files agents write, and fenced shared objects.

With ``CODITECT_ARTIFACTS_URL=s3://bucket/prefix`` (boto3, the standard ``AWS_*`` variables,
``AWS_ENDPOINT_URL`` included) a node result larger than ``CODITECT_ARTIFACT_THRESHOLD`` bytes is
written to ``<prefix>/runs/<run>/<node>/<attempt>/result.json`` and Redis holds only a reference,
``{"artifact": "s3://…", "bytes": N}``, which is what the run document shows. Downstream agents
still receive the value: ``resolve`` fetches a reference once per call. Objects of an attempt are
written with ``If-None-Match: *``, so no attempt overwrites another's. Shared objects
(``put(name, data, fence=token)``, under ``<prefix>/shared/``) carry the fencing token of the
lock holder that wrote them and are replaced only with ``If-Match`` on the ETag read: a write
with an older token than the object's is refused (``StaleFenceError``), whatever interleaves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, StaleFenceError

#: Conditional writes that lost a race are looked at again this many times before giving up.
CAS_TRIES = 5
#: Bytes read per chunk while fetching an object.
CHUNK = 1024 * 1024
#: S3's answers to a conditional write whose condition no longer held (another write came first).
LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict")


class ArtifactStore:
    """The bucket and prefix of ``CODITECT_ARTIFACTS_URL``, over one boto3 client."""

    def __init__(self, url: str) -> None:
        import boto3

        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.s3 = boto3.client("s3")

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def url_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put_new(self, name: str, data: bytes) -> str:
        """Write an object that must not exist yet (``If-None-Match: *``); its URL."""
        key = self.key(name)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
        return self.url_of(key)

    def put_fenced(self, name: str, data: bytes, fence: int | None) -> str:
        """Replace a shared object unless a newer fencing token (or, without one, any) wrote it."""
        from botocore.exceptions import ClientError

        key = self.key(name)
        for _ in range(CAS_TRIES):
            try:
                head = self.s3.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
                head = None
            condition: dict[str, str] = {"IfNoneMatch": "*"}
            if head is not None:
                newest = head.get("Metadata", {}).get("fence")
                if newest is not None and (fence is None or fence < int(newest)):
                    raise StaleFenceError(self.url_of(key), fence, int(newest))
                condition = {"IfMatch": head["ETag"]}
            metadata = {} if fence is None else {"fence": str(fence)}
            try:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata=metadata, **condition)
                return self.url_of(key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in (
                    "PreconditionFailed",
                    "ConditionalRequestConflict",
                ):
                    raise
        raise StaleFenceError(self.url_of(key), fence, -1)

    def read(self, url: str) -> bytes:
        """The bytes of an object of this store, read in chunks."""
        parts = urlsplit(url)
        body = self.s3.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))["Body"]
        return b"".join(body.iter_chunks(CHUNK))

    def owns(self, url: str) -> bool:
        return url.startswith(self.url + "/")

    def offload(self, result: Any, run_id: str, node_id: str, attempt: int, threshold: int) -> Any:
        """``result`` itself, or a reference to it once written, if its JSON is over ``threshold`` bytes."""
        try:
            encoded = json.dumps(result, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError):
            return result  # not JSON: the engine fails the node with the reason
        if len(encoded) <= threshold:
            return result
        url = self.put_new(f"runs/{run_id}/{node_id}/{attempt}/result.json", encoded)
        return {"artifact": url, "bytes": len(encoded)}

    def resolve(self, value: Any) -> Any:
        """A result with the references this store wrote replaced by their values (one level of lists too)."""
        if self._is_reference(value):
            return json.loads(self.read(value["artifact"]))
        if isinstance(value, list) and any(self._is_reference(v) for v in value):
            return [self.resolve(v) for v in value]
        return value

    def _is_reference(self, value: Any) -> bool:
        return (
            isinstance(value, dict)
            and value.keys() == {"artifact", "bytes"}
            and isinstance(value["artifact"], str)
            and self.owns(value["artifact"])
        )


@dataclass(frozen=True)
class NodeArtifacts:
    """``call.artifacts``: files of one attempt, under ``runs/<run>/<node>/<attempt>/``."""

    store: ArtifactStore | None
    run_id: str
    node_id: str
    attempt: int

    def put(self, name: str, data: bytes | str) -> str:
        """Write ``data`` as this attempt's ``name``; its ``s3://`` URL."""
        if self.store is None:
            raise ConfigError("CODITECT_ARTIFACTS_URL", "not set: agents cannot write artifacts without it")
        _check_name(name)
        raw = data.encode() if isinstance(data, str) else data
        return self.store.put_new(f"runs/{self.run_id}/{self.node_id}/{self.attempt}/{name}", raw)


_STORES: dict[str, ArtifactStore] = {}


def store_for(settings: Any) -> ArtifactStore | None:
    """This process's store of ``settings.artifacts_url`` (None when unset)."""
    url = settings.artifacts_url
    if url is None:
        return None
    if url not in _STORES:
        _STORES[url] = ArtifactStore(url)
    return _STORES[url]


def put(name: str, data: bytes | str, *, fence: int | None = None, settings: Any = None) -> str:
    """Write the shared object ``shared/<name>``, fenced (see the module); its URL."""
    from ..embedded import attach
    from ..settings import Settings

    store = store_for(settings if settings is not None else attach(Settings.from_env()))
    if store is None:
        raise ConfigError("CODITECT_ARTIFACTS_URL", "not set: there is nowhere to write artifacts")
    _check_name(name)
    return store.put_fenced(f"shared/{name}", data.encode() if isinstance(data, str) else data, fence)


def _check_name(name: str) -> None:
    if not name or len(name) > 512 or not name.isprintable() or name.startswith("/") or ".." in name.split("/"):
        raise ValueError(f"an artifact name is 1 to 512 printable characters, relative, without '..': {name!r}")
