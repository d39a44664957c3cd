"""A small key-value store in the state Redis whose writes can be fenced.

A key written with a fencing token remembers the newest token that wrote it, and refuses a write
with an older one, or with none, in the same script that would write: a check-and-set no
interleaving can slip past.
"""

from __future__ import annotations

import json
from typing import Any

from .. import keys
from ..errors import InvalidArgumentError, StaleFenceError
from ._client import client_for

#: Bytes of one value at most, as JSON (what one node result may be).
MAX_VALUE_BYTES = keys.MAX_RESULT_BYTES
#: (1, '') written, or (0, newest token) refused. ARGV: value, token ('' for none).
PUT = """
local newest = redis.call('HGET', KEYS[1], 'fence')
if newest and (ARGV[2] == '' or tonumber(ARGV[2]) < tonumber(newest)) then return {0, newest} end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'fence', ARGV[2]) end
redis.call('HSET', KEYS[1], 'value', ARGV[1])
return {1, ''}
"""


def _key(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 512 or not name.isprintable():
        raise InvalidArgumentError(f"a state key is 1 to 512 printable characters, not {name!r}")
    return keys.STATE_PREFIX + name


def put(name: str, value: Any, *, fence: int | None = None, settings: Any = None) -> None:
    """Store ``value`` (JSON) under ``name``; ``StaleFenceError`` if a newer token wrote it (or
    any token did and ``fence`` is None)."""
    key = _key(name)
    text = json.dumps(value, allow_nan=False)
    if len(text.encode()) > MAX_VALUE_BYTES:
        raise InvalidArgumentError(f"state {name!r}: the value is {len(text.encode())} bytes, over {MAX_VALUE_BYTES}")
    done, newest = client_for(settings).eval(PUT, 1, key, text, "" if fence is None else int(fence))
    if not int(done):
        raise StaleFenceError(f"state {name!r}", fence, int(newest))


def get(name: str, default: Any = None, *, settings: Any = None) -> Any:
    """The value stored under ``name``, else ``default``."""
    text = client_for(settings).hget(_key(name), "value")
    return default if text is None else json.loads(str(text))
