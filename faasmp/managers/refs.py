"""Reference counting of manager objects (the stdlib server's ``id_to_refcount``, kept in Redis)."""

from __future__ import annotations

import contextvars
from typing import Any

from ..backends.redis.manager_refs import ManagerRefs
from ..backends.redis.managers import RedisManager
from .served import LOCAL_SERVERS

# ---------------------------------------------------------------------------
# Reference counts (the stdlib server's id_to_refcount; kept in Redis by
# backends.redis.manager_refs).  Every proxy holds a handle of its object; a
# pickled copy gets its own handle when it is pickled (so the object survives
# while the copy travels) and releases it when the copy is garbage collected,
# or, inside a remote process, when that process has exited.  A copy stored
# inside another shared object holds a pin, which counts while that object lives.
# ---------------------------------------------------------------------------

#: The object id of the shared object a value is being pickled into, if any:
#: proxies inside the value then get a pin, not a handle.
PINNING: contextvars.ContextVar[str | None] = contextvars.ContextVar("faasmp_manager_pinning", default=None)


def manager_record(session: Any, mid: str) -> RedisManager:
    """Manager *mid*'s record in Redis (its lifecycle and the keys of its objects)."""
    return RedisManager(session.state, session.keys, mid, int(session.config.key_ttl * 1000))


def manager_refs(session: Any, mid: str) -> ManagerRefs:
    return ManagerRefs(
        session.state, session.keys.prefix, session.keys.k("mgr", mid), int(session.config.key_ttl * 1000)
    )


def drop_ref(session: Any, mid: str, oid: str, handle: str) -> None:
    """Finalizer of a reference: release its handle; the last one frees the object."""
    if session.closed:
        return
    try:
        freed = manager_refs(session, mid).drop_handle(oid, handle)
    except Exception:  # noqa: BLE001 - runs from garbage collection; the run may be ending
        return
    server = LOCAL_SERVERS.get(mid)
    if freed and server is not None:
        server.forget(oid)


def current_proc_id() -> str | None:
    """The faasmp process id of the calling code when it runs in a remote Process."""
    from ..process import current_process  # noqa: PLC0415

    return getattr(current_process(), "_proc_id", None)
