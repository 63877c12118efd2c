"""The dict key codec: canonical bytes for common key types, signed pickle for others."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..runtime.call import dumps, loads

# ---------------------------------------------------------------------------
# Dict key encoding: canonical bytes for common key types (no pickle, so equal
# keys always give the same field), signed pickle for anything else.
# ---------------------------------------------------------------------------


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def encode_key(key: Any, authkey: bytes) -> bytes:
    tp = type(key)
    if tp is str:
        return b"s" + key.encode("utf-8", "surrogatepass")
    if tp is int:
        return b"i" + format(key, "x").encode()
    if tp is bytes:
        return b"b" + key
    if key is None:
        return b"n"
    if tp is bool:
        return b"T" if key else b"F"
    if tp is float:
        return b"d" + key.hex().encode()
    if tp is tuple:
        return b"t" + b"".join(_frame(encode_key(x, authkey)) for x in key)
    if tp is frozenset:
        return b"f" + b"".join(_frame(e) for e in sorted(encode_key(x, authkey) for x in key))
    hash(key)  # unhashable keys fail as they do in a dict: TypeError: unhashable type
    return b"p" + dumps(key, authkey)


def _unframe(body: bytes, authkey: bytes) -> Iterator[Any]:
    pos = 0
    while pos < len(body):
        n = int.from_bytes(body[pos : pos + 4], "big")
        yield decode_key(body[pos + 4 : pos + 4 + n], authkey)
        pos += 4 + n


def decode_key(field: bytes, authkey: bytes) -> Any:
    tag, body = field[:1], field[1:]
    if tag == b"s":
        return body.decode("utf-8", "surrogatepass")
    if tag == b"i":
        return int(body, 16)
    if tag == b"b":
        return bytes(body)
    if tag == b"n":
        return None
    if tag == b"T":
        return True
    if tag == b"F":
        return False
    if tag == b"d":
        return float.fromhex(body.decode())
    if tag == b"t":
        return tuple(_unframe(body, authkey))
    if tag == b"f":
        return frozenset(_unframe(body, authkey))
    if tag == b"p":
        return loads(body, authkey)
    raise ValueError(f"unknown dict key encoding {tag!r} in a manager dict (not written by faasmp?)")
