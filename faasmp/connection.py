"""``faasmp.connection``: waiting on faasmp objects.

:func:`wait` takes process sentinels (``Process.sentinel``) and any object with
``ready()`` and a ``channel`` on which its owner publishes when it changes.
It subscribes before it checks, so a change between the check and the wait is
never missed, and blocks in Redis rather than polling.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol


class Waitable(Protocol):
    """What :func:`wait` accepts: a readiness check, a change channel, its session."""

    def ready(self) -> bool: ...

    @property
    def channel(self) -> str: ...

    @property
    def session(self) -> Any: ...


def wait(object_list: Iterable[Any], timeout: float | None = None) -> list[Any]:
    """Wait until an object in *object_list* is ready; return the ready ones.

    Like :func:`multiprocessing.connection.wait`: returns an empty list if
    *timeout* (seconds) passes first; ``None`` waits forever.
    """
    objects = list(object_list)
    for obj in objects:
        if not all(hasattr(obj, a) for a in ("ready", "channel", "session")):
            raise TypeError(
                f"faasmp.connection.wait() cannot wait on {obj!r}: pass Process.sentinel "
                "objects or faasmp connections"
            )
    ready = [o for o in objects if o.ready()]
    if ready or not objects or timeout == 0:
        return ready
    session = objects[0].session
    sub = session.state.subscribe(*{o.channel for o in objects})
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready = [o for o in objects if o.ready()]
            if ready:
                return ready
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if left <= 0:
                return []
            # A message only wakes us; readiness is re-checked above.  The
            # 1 s cap also catches workers lost without a publish.
            sub.get_message(timeout=left)
    finally:
        sub.close()
