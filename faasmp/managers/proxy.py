"""Proxies: :class:`BaseProxy` and the proxy types made from it.

A ``BaseProxy``'s referent is pickled in one key and each method call runs in
the calling process under the object's Redis lock; :func:`MakeProxyType` and
stdlib proxy classes (adapted) build on it.
"""

from __future__ import annotations

import copyreg
import functools
import pickle
import secrets
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ..backends.redis.manager_objects import ManagerObjectStore, RedisObject
from ..backends.redis.manager_refs import is_pin, pin
from ..runtime import metrics
from ..runtime.call import PicklingFailed, dumps, dumps_plain, loads, pickling_failed
from ..runtime.shared import SharedObject
from .common import ManagerKind, ManagerShutdownError, Token, address_of, remote_error
from .refs import PINNING, current_proc_id, drop_ref, manager_refs
from .served import LOCAL_SERVERS, LocalServer

if TYPE_CHECKING:
    from ..context import FaasContext
    from .manager import BaseManager


# ---------------------------------------------------------------------------
# Proxies
# ---------------------------------------------------------------------------


def _is_plain(value: Any) -> bool:
    """Does pickle rebuild *value* as ``cls.__new__(cls)`` plus its ``__dict__``?"""
    tp = type(value)
    if tp.__reduce_ex__ is not object.__reduce_ex__ or tp.__reduce__ is not object.__reduce__:
        return False
    if tp in copyreg.dispatch_table or hasattr(value, "__setstate__") or not hasattr(value, "__dict__"):
        return False
    try:
        rv = value.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - not picklable this way: store it whole
        return False
    return (
        len(rv) >= 3
        and rv[0] is copyreg.__newobj__  # type: ignore[attr-defined]
        and rv[1] == (tp,)
        and (rv[2] is None or rv[2] is value.__dict__)
        and all(extra is None for extra in rv[3:])
    )


class _Conn:
    """Per-proxy cache of what every operation needs (not pickled)."""

    __slots__ = ("authkey", "session", "store")

    def __init__(self, session: Any, store: Any) -> None:
        self.session = session
        self.authkey: bytes = session.authkey
        #: The object's keys in Redis (a :class:`ManagerObjectStore` subclass).
        self.store = store

    @property
    def keys(self) -> list[str]:
        """The manager's key, then the object's own keys (for inspection and tests)."""
        return [self.store.manager_key, *self.store.keys]


def _shutdown_error(description: str) -> ManagerShutdownError:
    """The error of a proxy whose manager (and so its object) is gone."""
    return ManagerShutdownError(
        f"{description}: its manager has shut down and deleted its shared objects (or "
        "they expired: nothing wrote to them for key_ttl)"
    )


class BaseProxy(SharedObject):
    """A reference to an object that lives in Redis, usable from any process.

    Subclass it (like the stdlib's ``BaseProxy``) and call
    :meth:`_callmethod` for a custom proxy type; the referent is pickled in one
    key and each call runs locally under the object's Redis lock.  Proxies are
    created by a manager, never directly.
    """

    _kind: ClassVar[str] = "mobj"
    #: The backend structure holding the referent, and so its keys.
    _store_type: ClassVar[type[ManagerObjectStore]] = RedisObject
    _key_suffixes: ClassVar[tuple[str, ...]] = RedisObject.SUFFIXES
    _exposed_: ClassVar[tuple[str, ...] | None] = None
    _method_to_typeid_: ClassVar[dict[str, str] | None] = None
    #: Longest a method call may hold an object's lock before another caller
    #: may take it (a crashed caller's lock frees itself after this).
    _lease: ClassVar[float] = 60.0

    _mid: str
    _typeid: str
    _manager: BaseManager | None
    _exposed: tuple[str, ...] | None
    _mcls: type[BaseManager] | None
    _plain: bool

    def __init__(self, *args: Any, **kwds: Any) -> None:
        raise TypeError(f"{type(self).__name__} objects are made by a manager, e.g. manager.dict()")

    # -- construction (manager side) -------------------------------------------
    @classmethod
    def _new(cls, ctx: FaasContext, mid: str, typeid: str, manager: BaseManager | None) -> Any:
        self = cls.__new__(cls)
        d = self.__dict__
        d["_ctx"] = ctx
        d["_oid"] = secrets.token_hex(8)
        d["_owner"] = False
        d["_mid"] = mid
        d["_typeid"] = typeid
        d["_manager"] = manager  # keeps the manager (and its objects) alive while we are
        d["_exposed"] = cls._exposed_
        d["_mcls"] = None
        d["_plain"] = False
        return self

    def _register(self) -> None:
        """Record this object's keys with its manager (deleted at its shutdown)."""
        self._conn().store.register()

    def _track(self) -> None:
        """Count the new object with this proxy as its first reference."""
        conn = self._conn()
        handle = secrets.token_hex(6)
        if not manager_refs(conn.session, self._mid).add_object(
            self._oid, self._typeid, conn.store.keys, handle
        ):
            raise self._closed_error()
        self._hold(handle)

    def _hold(self, handle: str) -> None:
        """Release *handle* when this proxy is garbage collected."""
        d = self.__dict__
        d["_ref"] = handle
        d["_ref_finalizer"] = weakref.finalize(
            self, drop_ref, self._ctx.session, self._mid, self._oid, handle
        )

    def _copy_handle(self) -> str | None:
        """A reference for a pickled copy (a pin if it is stored in a shared object)."""
        if not self._ctx.running:
            return None
        container = PINNING.get()
        handle = pin(container) if container is not None else secrets.token_hex(6)
        refs = manager_refs(self._conn().session, self._mid)
        # False: the object is not counted (gone, or its count expired): no handle.
        return handle if refs.add_handle(self._oid, handle, handle if container else "") else None

    def _adopt(self, value: Any) -> None:
        """Store *value* as the initial state (subclasses store natively).

        A plain instance (pickled as class + ``__dict__``) is stored as its
        ``__dict__``, its class once beside it: a class defined in
        ``__main__`` is pickled by value, which would otherwise cost a few
        hundred microseconds on every method call.
        """
        try:
            if _is_plain(value):
                state = self._dump(vars(value), "the object's attributes")
                cls_blob = self._dump(type(value), "the object's class")
                self.__dict__["_plain"] = True
                self.__dict__["_cls"] = type(value)
                self._store().obj_create(state, cls_blob)
            else:
                self._store().obj_create(self._dump(value, "the object"))
        except PicklingFailed:
            manager = self._manager
            if manager is None or manager._kind is not ManagerKind.OWNER:
                raise
            # Cannot live in Redis (a generator, an open file...): keep it here and
            # serve it to other processes, as the stdlib's manager server would.
            manager._local_server().keep(self._oid, value)
            self.__dict__["_served"] = True

    # -- pickling ----------------------------------------------------------------
    def _getstate_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"_mid": self._mid, "_typeid": self._typeid}
        if self._exposed is not type(self)._exposed_:
            extra["_exposed"] = self._exposed
        if self._mcls is not None:
            extra["_mcls"] = self._mcls
        if self._plain:
            extra["_plain"] = True
        if self.__dict__.get("_served"):
            extra["_served"] = True
        handle = self._copy_handle()
        if handle is not None:
            extra["_ref"] = handle
        return extra

    def _setstate_extra(self, state: dict[str, Any]) -> None:
        d = self.__dict__
        d["_manager"] = None
        d["_exposed"] = type(self)._exposed_
        d["_mcls"] = None
        d["_plain"] = False
        handle = state.pop("_ref", None)
        d.update(state)
        if handle is None or not self._ctx.running:
            return
        refs = manager_refs(self._ctx.session, self._mid)
        proc_id = current_proc_id()
        if is_pin(handle):
            # A copy read back from a shared object: the stored one keeps its
            # pin; this one gets its own reference, so it outlives the container.
            handle = secrets.token_hex(6)
            if not refs.add_handle(self._oid, handle, proc_id or ""):
                return
        elif proc_id:
            # In a remote process: released when that process exits, even if it
            # is killed or ends with os._exit (no garbage collection there).
            refs.add_handle(self._oid, handle, proc_id)
        self._hold(handle)

    def __reduce__(self) -> Any:
        made = type(self).__dict__.get("_made_")
        if made is not None:  # a generated class: rebuild it on the other side
            return (_rebuild_made, (made, self._ctx, self._oid, self._getstate_extra()))
        adapted = type(self).__dict__.get("_adapted_")
        if adapted is not None:  # adapted from a stdlib proxy class: adapt it again there
            return (_rebuild_adapted, (adapted, self._ctx, self._oid, self._getstate_extra()))
        return super().__reduce__()

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self._getvalue()

    # -- plumbing ----------------------------------------------------------------
    def _keyname(self, suffix: str) -> str:
        return SharedObject.key(self, suffix)

    def _conn(self) -> _Conn:
        conn: _Conn | None = self.__dict__.get("_c")
        if conn is not None and not conn.session.closed:
            return conn
        if not self._ctx.running:
            raise ManagerShutdownError(
                f"{self._describe()}: the faasmp run it belonged to has ended (its context was shut down)"
            )
        session = self._ctx.session
        store = self._store_type(
            session.state,
            session.keys.k("mgr", self._mid),
            [self._keyname(s) for s in self._key_suffixes],
            int(session.config.key_ttl * 1000),
            # Not a bound method: the store is cached in the proxy, which must
            # not be kept alive by a cycle (its finalizer drops its reference).
            functools.partial(_shutdown_error, self._describe()),
        )
        conn = _Conn(session, store)
        self.__dict__["_c"] = conn
        return conn

    def _store(self) -> RedisObject:
        store: RedisObject = self._conn().store
        return store

    def _closed_error(self) -> ManagerShutdownError:
        return _shutdown_error(self._describe())

    def _count(self, op: str, t0: float) -> None:
        """Count one call of method *op* that began at ``perf_counter()`` *t0* (see runtime.metrics)."""
        key = "_m_" + op
        c: metrics.Counter | None = self.__dict__.get(key)
        if c is None:
            c = self.__dict__[key] = metrics.counter("manager", f"{self._typeid} {self._oid}", op)
        c.since(t0)

    def _describe(self) -> str:
        return f"{type(self).__name__} for {self._typeid!r} object {self._oid}"

    def _dump(self, value: Any, what: str) -> bytes:
        # Plain data (numbers, strings, bytes, None in small tuples/lists) holds
        # no proxy and pickles to the same bytes with the C pickler, without a
        # cloudpickle Pickler's set-up (~7 us of a dict set's ~30 us of CPU).
        plain = dumps_plain(value, self._conn().authkey)
        if plain is not None:
            return plain
        pinning = PINNING.set(self._oid)  # proxies inside the value are pinned, not handed out
        try:
            return dumps(value, self._conn().authkey)
        except Exception as exc:  # noqa: BLE001 - any pickling failure becomes one clear error
            raise pickling_failed(
                f"cannot store {what} in a manager {self._typeid!r}: {type(value).__name__} object "
                f"is not picklable ({type(exc).__name__}: {exc}). Shared objects live in Redis, "
                "so everything stored in them must pickle.",
                exc,
            ) from exc
        finally:
            PINNING.reset(pinning)

    def _load(self, blob: bytes) -> Any:
        return loads(blob, self._conn().authkey)

    @property
    def _token(self) -> Token:
        return Token(self._typeid, address_of(self._conn().session.run_id, self._mid), self._oid)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object, typeid {self._typeid!r} at {id(self):#x}>"

    def __str__(self) -> str:
        try:
            return repr(self._getvalue())
        except Exception as exc:  # noqa: BLE001 - str() of a broken proxy must not raise
            return repr(self)[:-1] + f"; '__str__()' failed: {exc}>"

    # -- the stdlib's proxy API ---------------------------------------------------
    def _check_exposed(self, methodname: str) -> None:
        exposed = self._exposed
        if exposed is not None and methodname not in exposed:
            raise remote_error(
                AttributeError(
                    f"method {methodname!r} of {self._typeid!r} object is not in exposed={exposed!r}"
                )
            )

    def _callmethod(
        self, methodname: str, args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None
    ) -> Any:
        """Call *methodname* of the referent and return the result.

        Runs in this process: the object is loaded, the method called and the
        object stored back while holding the object's Redis lock (blocks while
        another process is in a method of the same object).  A result whose
        method is in ``method_to_typeid`` becomes a new shared object of that
        typeid and a proxy for it is returned.
        """
        self._check_exposed(methodname)
        self._count(methodname, time.perf_counter())
        if self.__dict__.get("_served"):
            return self._served_call(methodname, args, kwds or {})
        token = secrets.token_hex(8)
        blob, cls_blob = self._acquire(token)
        try:
            obj = self._load_object(blob, cls_blob)
        except BaseException:
            self._release_lock(token, None)
            raise
        try:
            result = getattr(obj, methodname)(*args, **(kwds or {}))
        except BaseException:
            self._store_release(token, obj, blob)
            raise
        self._store_release(token, obj, blob)
        typeid = (self._method_to_typeid() or {}).get(methodname)
        if typeid is not None:
            result = self._wrap_result(typeid, result)
        return result

    def _served_call(self, methodname: str, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        """Call a method of a referent kept in the manager's process (see :class:`LocalServer`)."""
        server = LOCAL_SERVERS.get(self._mid)
        if server is not None:  # this is the manager's process: call it here
            result = server.call(self._oid, methodname, args, kwds)
        else:
            result = LocalServer.request(self, methodname, args, kwds)
        typeid = (self._method_to_typeid() or {}).get(methodname)
        if typeid is not None:
            result = self._wrap_result(typeid, result)
        return result

    def _getvalue(self) -> Any:
        """A copy of the referent (reads it without taking the lock)."""
        if self.__dict__.get("_served"):
            return self._served_call("#GETVALUE", (), {})
        blob, cls_blob = self._store().obj_peek()
        if blob is None:
            raise ManagerShutdownError(f"{self._describe()}: its state no longer exists in Redis")
        return self._load_object(blob, cls_blob)

    # -- object state under a lease lock -----------------------------------------
    def _load_object(self, blob: bytes, cls_blob: bytes | None) -> Any:
        if not self._plain:
            return self._load(blob)
        cls = self.__dict__.get("_cls")
        if cls is None:
            if cls_blob is None:
                raise ManagerShutdownError(f"{self._describe()}: its class no longer exists in Redis")
            cls = self.__dict__["_cls"] = self._load(cls_blob)
        obj = cls.__new__(cls)
        obj.__dict__.update(self._load(blob))
        return obj

    def _dump_object(self, obj: Any) -> bytes:
        if self._plain and type(obj) is not self.__dict__.get("_cls"):
            raise TypeError(f"a method changed the object's class to {type(obj).__name__}")
        pinning = PINNING.set(self._oid)  # proxies the referent holds are pinned
        try:
            return dumps(vars(obj) if self._plain else obj, self._conn().authkey)
        finally:
            PINNING.reset(pinning)

    def _acquire(self, token: str) -> tuple[bytes, bytes | None]:
        """Take the object's lock (waiting in Redis); its state and, if needed, class."""
        need_cls = self._plain and "_cls" not in self.__dict__
        blob, cls_blob = self._store().obj_acquire(token, int(self._lease * 1000), need_cls)
        if blob is None:  # the state expired or was deleted
            self._release_lock(token, None)
            raise ManagerShutdownError(f"{self._describe()}: its state no longer exists in Redis")
        return blob, cls_blob

    def _release_lock(self, token: str, blob: bytes | None) -> None:
        if not self._store().obj_release(token, blob):
            raise RuntimeError(
                f"{self._describe()}: a method call held the object's lock longer than its "
                f"{self._lease:g} s lease and another process took it; this call's changes were not "
                "stored (raise BaseProxy._lease for long methods)"
            )

    def _store_release(self, token: str, obj: Any, old: bytes) -> None:
        try:
            new: bytes | None = self._dump_object(obj)
        except Exception as exc:  # noqa: BLE001 - report which object could not be stored
            self._release_lock(token, None)
            raise pickling_failed(
                f"{self._describe()}: after the method call the object could not be pickled "
                f"({type(exc).__name__}: {exc}); its change was not stored",
                exc,
            ) from exc
        self._release_lock(token, None if new == old else new)

    # -- method_to_typeid ---------------------------------------------------------
    def _method_to_typeid(self) -> dict[str, str] | None:
        if self._mcls is None:
            return type(self)._method_to_typeid_
        return self._mcls._registry_entry(self._typeid)[2]

    def _wrap_result(self, typeid: str, value: Any) -> Any:
        # Imported here: object creation and SyncManager build on this module.
        from .objects import make_object  # noqa: PLC0415
        from .sync import SyncManager  # noqa: PLC0415

        mcls = self._mcls if self._mcls is not None else SyncManager
        return make_object(mcls, self._ctx, self._mid, typeid, None, value=value)


def _rebuild_made(made: tuple[str, tuple[str, ...], type], ctx: Any, oid: str, extra: dict[str, Any]) -> Any:
    from ..runtime.shared import _rebuild  # noqa: PLC0415

    return _rebuild(MakeProxyType(*made), ctx, oid, extra)


class AutoProxy(BaseProxy):
    """Base of the proxy types made for registered classes (``proxytype=None``)."""


#: Attributes of a stdlib proxy class that belong to the stdlib's machinery
#: (connection, reference counting, pickling), not to the proxy's interface.
_STDLIB_PROXY_MACHINERY = frozenset(
    {"__init__", "__reduce__", "__deepcopy__", "__repr__", "__str__", "__dict__", "__weakref__",
     "__module__", "__qualname__", "__doc__", "_callmethod", "_getvalue", "_incref", "_decref",
     "_after_fork", "_connect"}
)  # fmt: skip


@functools.lru_cache(maxsize=64)
def adapt_proxytype(proxytype: Any) -> Any:
    """A faasmp proxy type with the interface of a stdlib ``multiprocessing.managers.BaseProxy`` subclass.

    Code written for the stdlib registers its own proxy classes (e.g. an
    iterator proxy whose ``__next__`` calls ``self._callmethod('__next__')``).
    Their methods are copied onto a :class:`BaseProxy` subclass, so the same
    ``_callmethod`` calls act on the object kept in Redis.  Other types are
    returned unchanged.
    """
    import multiprocessing.managers as std  # noqa: PLC0415

    if not (isinstance(proxytype, type) and issubclass(proxytype, std.BaseProxy)):
        return proxytype
    if issubclass(proxytype, BaseProxy):  # faasmp's own BaseProxy patched in as the stdlib's
        return proxytype
    namespace: dict[str, Any] = {}
    for klass in reversed(proxytype.__mro__):
        if klass in std.BaseProxy.__mro__:
            continue
        namespace.update((k, v) for k, v in vars(klass).items() if k not in _STDLIB_PROXY_MACHINERY)
    namespace.update(_adapted_=proxytype, __module__=proxytype.__module__, __doc__=proxytype.__doc__)
    return type(proxytype.__name__, (BaseProxy,), namespace)


def _rebuild_adapted(proxytype: type, ctx: Any, oid: str, extra: dict[str, Any]) -> Any:
    from ..runtime.shared import _rebuild  # noqa: PLC0415

    return _rebuild(adapt_proxytype(proxytype), ctx, oid, extra)


@functools.lru_cache(maxsize=256)
def MakeProxyType(name: str, exposed: tuple[str, ...], base: type[BaseProxy] = BaseProxy) -> type[BaseProxy]:
    """A proxy type with one method per name in *exposed* calling :meth:`BaseProxy._callmethod`."""
    exposed = tuple(exposed)

    def method(meth: str) -> Callable[..., Any]:
        def call(self: BaseProxy, /, *args: Any, **kwds: Any) -> Any:
            return self._callmethod(meth, args, kwds)

        call.__name__ = call.__qualname__ = meth
        return call

    namespace: dict[str, Any] = {meth: method(meth) for meth in exposed}
    namespace.update(_exposed_=exposed, _made_=(name, exposed, base), __module__=__name__)
    return type(name, (base,), namespace)


_ATTRIBUTE_HOOKS = frozenset({"__getattribute__", "__getattr__", "__setattr__", "__delattr__"})


def _counted(op: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """*fn* (a proxy method) counting its calls and their time as operation *op*."""

    @functools.wraps(fn)
    def counted(self: BaseProxy, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            self._count(op, t0)

    counted._faasmp_counted = True  # type: ignore[attr-defined]
    return counted


class NativeProxy(BaseProxy):
    """Proxies whose operations are native Redis structures (dict, list, ...)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Count the calls of every exposed method the class defines (not one
        # line in each of them); mixin methods count through these.
        super().__init_subclass__(**kwargs)
        for name in getattr(cls, "_exposed_", None) or ():
            fn = cls.__dict__.get(name)
            # Attribute access itself (a Namespace's) is not wrapped: the
            # wrapper's own attribute lookups would recurse into it.  Such a
            # class counts its public attributes itself (NamespaceProxy).
            if name in _ATTRIBUTE_HOOKS:
                continue
            if callable(fn) and not getattr(fn, "_faasmp_counted", False):
                setattr(cls, name, _counted(name, fn))

    def _callmethod(
        self, methodname: str, args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None
    ) -> Any:
        """Call *methodname* (one of ``_exposed_``) with the stdlib's calling convention."""
        self._check_exposed(methodname)
        return getattr(self, methodname)(*args, **(kwds or {}))
