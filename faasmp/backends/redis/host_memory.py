"""Host shared memory segments in Redis: which exist, their size, which file holds them.

A segment in host shared memory (:mod:`faasmp.backends.host_memory`) keeps
its bytes in a file every process maps; Redis stays the one authority on
what exists, so ``SharedMemory(name)``, ``FileExistsError``,
``FileNotFoundError``, ``unlink()`` and the run's key TTLs behave exactly as
for segments in Redis.

Key layout, for a segment whose base key is ``K`` (the same base key as a
segment in Redis, so owners delete and renew it the same way):

* ``K``  STRING ``"host <size> <inode>"``: the segment's size and the inode of
  its file (an attacher maps the file only if it is that inode: a file left
  by an earlier segment of the same name is never used).

Round trips: :meth:`create` 1, :meth:`describe` 1, :meth:`delete` 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .shared_memory import SUFFIXES

if TYPE_CHECKING:
    from ..state import StateBackend

_TAG = b"host"


class HostSegmentStore:
    """The Redis side of host shared memory segments (see the module doc)."""

    def __init__(self, state: StateBackend) -> None:
        self._state = state
        self._direct = state.direct

    @staticmethod
    def keys(key: str) -> list[str]:
        """Every key a segment *key* may have (a host or a Redis segment): what its owner deletes."""
        return [f"{key}:{s}" if s else key for s in SUFFIXES]

    def create(self, key: str, size: int, ino: int, ttl_ms: int, *, exclusive: bool = False) -> bool:
        """Record segment *key* (*size* bytes, its file's inode *ino*); False if *exclusive* and it exists."""
        nx = ("NX",) if exclusive else ()
        reply = self._direct.execute_many([("SET", key, b"%s %d %d" % (_TAG, size, ino), "PX", ttl_ms, *nx)])
        return reply[0] is not None

    def describe(self, key: str) -> tuple[int, int] | None:
        """(size, inode) of segment *key*; None if it does not exist.

        Raises ValueError if *key* holds a segment kept in Redis (a process
        of another shared-memory mode made it: the modes never mix in a run).
        """
        value = self._direct.execute_many([("GET", key)])[0]
        if value is None:
            return None
        tag, size, ino = bytes(value).split(b" ", 2) if value.startswith(_TAG + b" ") else (b"", b"", b"")
        if tag != _TAG:
            raise ValueError(f"faasmp shared memory {key}: its bytes are in Redis, not in host shared memory")
        return int(size), int(ino)

    def delete(self, key: str) -> bool:
        """Delete the segment's record; False if it did not exist."""
        return bool(self._state.delete(*self.keys(key)))
