"""Creating shared objects: from a registered callable or adopting a value; directly shared objects."""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..runtime.shared import SharedObject
from .common import ManagerKind, ManagerShutdownError, public_methods, remote_error
from .proxy import AutoProxy, BaseProxy, MakeProxyType, NativeProxy
from .refs import drop_ref, manager_record, manager_refs

if TYPE_CHECKING:
    from ..context import FaasContext
    from .manager import BaseManager


# ---------------------------------------------------------------------------
# Object creation
# ---------------------------------------------------------------------------


class Direct:
    """Marker ``proxytype`` for objects that are shared by themselves.

    The registered callable is called as ``callable(*args, ctx=context,
    **kwds)`` and must return a faasmp shared object (a ``Lock``, ``Queue``,
    ...); it is handed out as is.  It lives as long as that object in the process
    that made it, and the manager releases it at shutdown if it is still alive.
    """


_NO_VALUE: Any = object()


def _create_value(callable_: Callable[..., Any], args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
    """Call a registered callable; its errors become ``RemoteError`` as from a stdlib server."""
    try:
        return callable_(*args, **kwds)
    except Exception as exc:
        raise remote_error(exc) from exc


def make_object(
    mcls: type[BaseManager],
    ctx: FaasContext,
    mid: str,
    typeid: str,
    manager: BaseManager | None,
    args: tuple[Any, ...] = (),
    kwds: dict[str, Any] | None = None,
    *,
    value: Any = _NO_VALUE,
) -> Any:
    """Create a shared object of *typeid* (from its callable, or adopting *value*)."""
    kwds = kwds or {}
    callable_, exposed, method_to_typeid, proxytype = mcls._registry_entry(typeid)
    if proxytype is Direct:
        given = {id(a) for a in (*args, *kwds.values())}
        if value is _NO_VALUE:
            if callable_ is None:
                raise TypeError(f"typeid {typeid!r} has no callable to create objects with")
            value = _create_value(callable_, args, {**kwds, "ctx": ctx})
        parts = _shared_parts(value, given)
        _register_keys(ctx, mid, parts)
        _track_direct(ctx, mid, typeid, value, parts)
        if manager is not None and manager._kind is ManagerKind.OWNER:
            # Weakly: like any faasmp object it lives while this process holds
            # it; the manager releases what is left at shutdown.
            manager._objects.extend(weakref.ref(p) for p in parts)
            if not parts and hasattr(value, "terminate"):  # a Pool
                manager._objects.append(weakref.ref(value))
        return value
    if value is _NO_VALUE:
        if callable_ is None:
            if kwds or len(args) != 1:
                raise ValueError("Without callable, must have one non-keyword argument")
            value = args[0]
        else:
            value = _create_value(callable_, args, kwds)
    if proxytype is AutoProxy:
        names = tuple(exposed) if exposed is not None else tuple(public_methods(value))
        ptype: type[BaseProxy] = MakeProxyType(f"AutoProxy[{typeid}]", names, AutoProxy)
    else:
        ptype = proxytype
    proxy = ptype._new(ctx, mid, typeid, manager)
    if exposed is not None and not issubclass(ptype, NativeProxy):
        proxy.__dict__["_exposed"] = tuple(exposed)
    elif ptype._exposed_ is None and not issubclass(ptype, NativeProxy):
        proxy.__dict__["_exposed"] = tuple(public_methods(value))
    if method_to_typeid:
        proxy.__dict__["_mcls"] = mcls
    proxy._register()
    # Counted before its value is stored: proxies inside the value are pinned
    # to it, and a pin counts only while its container is a live object.
    proxy._track()
    proxy._adopt(value)
    return proxy


def _track_direct(ctx: FaasContext, mid: str, typeid: str, value: Any, parts: list[SharedObject]) -> None:
    """Count a directly shared object (a Lock, Queue, Pool...) as live while its owner holds it."""
    session = ctx.session
    oid, handle = secrets.token_hex(8), secrets.token_hex(6)
    keys = [p.key(s) for p in parts for s in p._key_suffixes]
    try:
        weakref.ref(value)
    except TypeError:
        return  # cannot tell when it dies: not counted (released at shutdown)
    if manager_refs(session, mid).add_object(oid, typeid, keys, handle):
        weakref.finalize(value, drop_ref, session, mid, oid, handle)


def _shared_parts(obj: Any, given: set[int]) -> list[SharedObject]:
    """The shared objects *obj* consists of (itself, or a wrapper's lock and data).

    Objects the caller passed in (*given*, by id), e.g. a Condition's lock, are
    not the manager's to delete.
    """
    parts: list[SharedObject] = []
    seen = set(given)
    for candidate in (obj, *getattr(obj, "__dict__", {}).values()):
        if isinstance(candidate, SharedObject) and id(candidate) not in seen:
            seen.add(id(candidate))
            parts.append(candidate)
    return parts


def _register_keys(ctx: FaasContext, mid: str, parts: list[SharedObject]) -> None:
    """Record the keys of directly shared objects with manager *mid* (deleted at its shutdown)."""
    keys = [p.key(s) for p in parts for s in p._key_suffixes]
    if not keys:
        return
    if not manager_record(ctx.session, mid).register_keys(keys):
        raise ManagerShutdownError(f"manager {mid} has shut down; no more objects can be made with it")
