"""The manager: :class:`BaseManager` (start, connect, shutdown, register) with no server process."""

from __future__ import annotations

import errno
import hashlib
import hmac
import secrets
import weakref
from collections.abc import Callable, Iterable
from multiprocessing import ProcessError
from typing import TYPE_CHECKING, Any, ClassVar

from ..runtime.call import AuthenticationError
from ..runtime.shared import SharedObject, context_or_default
from .common import ADDRESS_PREFIX, ManagerKind, State, address_of
from .objects import Direct, make_object
from .proxy import AutoProxy, BaseProxy, adapt_proxytype
from .refs import manager_record, manager_refs
from .served import LOCAL_SERVERS, LocalServer

if TYPE_CHECKING:
    from ..context import FaasContext


class _ServerHandle:
    """What ``manager._process`` is: a stand-in for the stdlib's server process handle.

    faasmp managers have no server process (objects live in Redis, or are
    served by a thread of the owner process, see :class:`LocalServer`);
    ``exitcode`` is ``None`` while the manager runs and ``0`` once it shut down.
    ``pid`` is ``None``, as for a process that never started: code that
    signals the stdlib's server (``os.kill(manager._process.pid, SIGINT)``)
    then fails with a ``TypeError`` instead of signalling the client itself,
    which is what a pid of this process would have done.
    """

    def __init__(self, manager: BaseManager) -> None:
        self._state = manager._state
        self.pid: int | None = None
        self.name = f"{type(manager).__name__}-{manager._mid}"

    @property
    def exitcode(self) -> int | None:
        return 0 if self._state.value == State.SHUTDOWN else None

    def is_alive(self) -> bool:
        return self._state.value == State.STARTED

    def join(self, timeout: float | None = None) -> None:
        """Nothing to wait for: shutdown is one Redis script."""

    def __repr__(self) -> str:
        return f"<faasmp manager server {self.name} exitcode={self.exitcode}>"


def _shutdown_manager(session: Any, mid: str, objects: list[Any]) -> None:
    """Delete every object of manager *mid* (its finalizer; runs once)."""
    try:
        if not session.closed:
            manager_record(session, mid).shutdown()
    finally:
        for entry in reversed(objects):
            obj: Any = entry() if isinstance(entry, weakref.ref) else entry
            try:
                if obj is None:  # already collected: its own finalizer released it
                    continue
                if isinstance(obj, SharedObject):
                    obj._release()
                elif hasattr(obj, "terminate"):
                    obj.terminate()
            except Exception:  # noqa: BLE001, S110 - best effort: the run may be ending
                pass
        objects.clear()


class BaseManager:
    """Creates shared objects whose state lives in Redis (no server process).

    Same API as :class:`multiprocessing.managers.BaseManager`; differences:

    * ``start()`` starts no process: it reserves the manager's id in Redis
      and runs *initializer* here (in the stdlib it runs in the manager
      process, whose globals nobody else sees).
    * ``address`` is ``'faasmp:<run id>/<manager id>'``.  Passing it (or a
      plain name, which becomes the manager id) to another manager of the
      same run and calling ``connect()`` attaches to the same objects; the
      stdlib's ``(host, port)`` addresses are refused (there is no socket).
    * *authkey* (bytes) must match between ``start()`` and ``connect()``
      (else :class:`multiprocessing.AuthenticationError`); payloads are in
      any case signed with the run's key.  Only ``serializer='pickle'``.
    * Managers pickle (as connected managers) once started, so one can be
      passed to a process that creates more objects with it.
    * *shutdown_timeout* is accepted for compatibility; shutdown is one
      atomic Redis script, nothing to wait for.
    """

    _registry: ClassVar[dict[str, tuple[Any, Any, Any, Any]]] = {}

    def __init__(
        self,
        address: Any = None,
        authkey: bytes | None = None,
        serializer: str = "pickle",
        ctx: Any = None,
        *,
        shutdown_timeout: float = 1.0,
    ) -> None:
        if serializer != "pickle":
            raise ValueError(
                f"unknown serializer {serializer!r}: faasmp managers store signed pickles only ('pickle')"
            )
        if authkey is not None and not isinstance(authkey, bytes | bytearray | memoryview):
            raise TypeError(f"authkey should be a byte string, not {type(authkey).__name__}")
        self._address = address
        self._run_id, self._mid = _parse_address(address)
        self._authkey = bytes(authkey) if authkey is not None else None
        self._serializer = serializer
        self._ctx: FaasContext = context_or_default(ctx)
        self._shutdown_timeout = shutdown_timeout
        self._state = State()
        self._kind: ManagerKind | None = None
        # What to release at shutdown: weak references to directly shared
        # objects (and pools), and the local server.
        self._objects: list[Any] = []
        self._finalizer: weakref.finalize | None = None  # type: ignore[type-arg]
        self._session: Any = None
        self._process: _ServerHandle | None = None

    # -- lifecycle ------------------------------------------------------------------
    def _check_initial(self) -> None:
        if self._state.value == State.STARTED:
            raise ProcessError("Already started server")
        if self._state.value == State.SHUTDOWN:
            raise ProcessError("Manager has shut down")

    def _attach(self) -> Any:
        session = self._ctx.session
        if self._run_id is not None and self._run_id != session.run_id:
            raise ValueError(
                f"manager address {self._address!r} belongs to faasmp run {self._run_id}, "
                f"but this context runs {session.run_id}; managers are shared within one run"
            )
        self._session = session
        return session

    def _auth_member(self, session: Any) -> str:
        key = self._authkey if self._authkey is not None else b""
        return "@auth:" + hmac.new(session.authkey, b"manager-authkey:" + key, hashlib.sha256).hexdigest()

    def start(self, initializer: Callable[..., Any] | None = None, initargs: Iterable[Any] = ()) -> None:
        """Make the manager ready to create objects; runs *initializer(*initargs)* here first."""
        self._check_initial()
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        session = self._attach()
        if self._mid is None:
            self._mid = secrets.token_hex(8)
        if initializer is not None:
            initializer(*initargs)
        if not manager_record(session, self._mid).start(self._auth_member(session)):
            raise OSError(errno.EADDRINUSE, f"a faasmp manager is already running at {self.address!r}")
        self._kind = ManagerKind.OWNER
        self._state.value = State.STARTED
        self._process = _ServerHandle(self)
        self._finalizer = weakref.finalize(self, _shutdown_manager, session, self._mid, self._objects)

    def _local_server(self) -> LocalServer:
        """The thread serving this manager's unpicklable objects (started on first use)."""
        server = LOCAL_SERVERS.get(self._mid or "")
        if server is None:
            assert self._mid is not None
            server = LocalServer(self._session, self._mid)
            self._objects.append(server)  # terminated at shutdown
        return server

    def connect(self) -> None:
        """Attach to the objects of the started manager at ``address`` (same run).

        Raises :class:`ConnectionRefusedError` if no manager runs there and
        :class:`multiprocessing.AuthenticationError` if the authkey differs.
        """
        if self._mid is None:
            raise ValueError("connect() needs the address of a started manager (its .address)")
        session = self._attach()
        result = manager_record(session, self._mid).connect(self._auth_member(session))
        if result == 0:
            raise ConnectionRefusedError(
                f"no faasmp manager at {self.address!r}: it has shut down or was never started"
            )
        if result == -1:
            raise AuthenticationError(
                f"digest received was wrong: the authkey differs from the manager's at {self.address!r}"
            )
        self._kind = ManagerKind.CONNECTED
        self._state.value = State.STARTED

    def shutdown(self) -> None:
        """Delete every object this manager created (owner) or detach (connected).

        Afterwards their proxies raise :class:`ManagerShutdownError` in every
        process; directly shared objects (locks, queues, ...) are released and
        pools terminated.  Calling it again does nothing.
        """
        if self._state.value != State.STARTED:
            if self._state.value == State.INITIAL:
                self._state.value = State.SHUTDOWN
            return
        self._state.value = State.SHUTDOWN
        if self._finalizer is not None:
            self._finalizer()

    def _live_objects(self) -> list[tuple[str, str, int, int]]:
        if self._state.value != State.STARTED or self._session is None or self._session.closed:
            shut = self._state.value == State.SHUTDOWN
            raise ProcessError("Manager has shut down" if shut else "Manager has not been started")
        assert self._mid is not None
        return manager_refs(self._session, self._mid).live()

    def _number_of_objects(self) -> int:
        """How many of this manager's shared objects are alive, as the stdlib's server counts them.

        An object is alive while a proxy of it exists in some process (or a
        copy is on its way to one, or it is stored inside another shared
        object); the objects of remote processes that have exited no longer
        count.  Objects found unreferenced are freed by the count itself.
        Only for debugging, like the stdlib's.
        """
        return len(self._live_objects())

    def _debug_info(self) -> str:
        """One entry per live object: its id, reference count and type (the stdlib's format)."""
        lines = []
        for oid, typeid, count, pins in sorted(self._live_objects()):
            stored = f", {pins} stored in other shared objects" if pins else ""
            lines.append(f"  {oid}:       refcount={count}\n    {typeid} object{stored}")
        return "\n".join(lines)

    def join(self, timeout: float | None = None) -> None:
        """Wait until this manager is shut down (by any process), at most *timeout* seconds.

        Blocks in Redis.  Returns at once if it is not running.
        """
        if self._state.value != State.STARTED or self._session is None or self._session.closed:
            return
        if timeout is not None and timeout <= 0:
            return
        assert self._mid is not None
        manager_record(self._session, self._mid).wait_shutdown(timeout)

    def __enter__(self) -> BaseManager:
        if self._state.value == State.INITIAL:
            self.start()
        if self._state.value != State.STARTED:
            raise ProcessError("Manager has shut down")
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.shutdown()

    @property
    def address(self) -> Any:
        """``'faasmp:<run id>/<manager id>'`` once started or connected (else as given)."""
        if self._session is None or self._mid is None:
            return self._address
        return address_of(self._session.run_id, self._mid)

    def get_server(self) -> _Server:
        """An object whose ``serve_forever()`` starts this manager and blocks until it shuts down."""
        self._check_initial()
        return _Server(self)

    def __reduce__(self) -> Any:
        if self._state.value != State.STARTED:
            raise TypeError("a manager can be passed to another process only while it is started")
        return (_rebuild_manager, (type(self), self._ctx, self._mid))

    def __repr__(self) -> str:
        state = {State.INITIAL: "initial", State.STARTED: "started", State.SHUTDOWN: "shut down"}
        kind = f" {self._kind.value}" if self._kind is not None else ""
        return f"<{type(self).__name__} {state[self._state.value]}{kind} address={self.address!r}>"

    # -- objects -----------------------------------------------------------------------
    def _create(self, typeid: str, /, *args: Any, **kwds: Any) -> Any:
        """Create a shared object of *typeid*; returns its proxy (or the object itself)."""
        if self._state.value != State.STARTED:
            if self._state.value == State.SHUTDOWN:
                raise ProcessError("Manager has shut down")
            raise ProcessError("Manager has not been started: call start() or use it in a with statement")
        assert self._mid is not None
        return make_object(type(self), self._ctx, self._mid, typeid, self, args, kwds)

    @classmethod
    def _registry_entry(cls, typeid: str) -> tuple[Any, Any, Any, Any]:
        try:
            return cls._registry[typeid]
        except KeyError:
            raise ValueError(
                f"unknown typeid {typeid!r} for {cls.__name__}; registered: {sorted(cls._registry)}"
            ) from None

    @classmethod
    def register(
        cls,
        typeid: str,
        callable: Callable[..., Any] | None = None,
        proxytype: Any = None,
        exposed: Iterable[str] | None = None,
        method_to_typeid: dict[str, str] | None = None,
        create_method: bool = True,
    ) -> None:
        """Register *typeid*: ``manager.<typeid>(*args)`` then creates a shared object.

        With the default ``proxytype`` (:class:`AutoProxy`), the object made
        by *callable* is pickled into Redis and its public methods (or
        *exposed*) become proxy methods run under the object's lock.  A
        :class:`BaseProxy` subclass gives a custom proxy; :class:`Direct`
        hands out faasmp shared objects as they are.
        """
        if not isinstance(typeid, str):
            raise TypeError(f"typeid must be a string, not {type(typeid).__name__}")
        if "_registry" not in cls.__dict__:
            cls._registry = cls._registry.copy()
        if proxytype is None:
            proxytype = AutoProxy
        proxytype = adapt_proxytype(proxytype)
        if proxytype is not Direct and not (isinstance(proxytype, type) and issubclass(proxytype, BaseProxy)):
            raise TypeError(
                f"proxytype for {typeid!r} must be a faasmp.managers.BaseProxy subclass (or "
                f"Direct), not {proxytype!r}; stdlib proxy classes need a server process"
            )
        exposed = exposed or getattr(proxytype, "_exposed_", None)
        method_to_typeid = method_to_typeid or getattr(proxytype, "_method_to_typeid_", None)
        if method_to_typeid:
            for key, value in method_to_typeid.items():
                if type(key) is not str or type(value) is not str:
                    raise TypeError(f"method_to_typeid must map str to str, got {key!r}: {value!r}")
        cls._registry[typeid] = (
            callable,
            tuple(exposed) if exposed is not None else None,
            dict(method_to_typeid) if method_to_typeid else None,
            proxytype,
        )
        if create_method:

            def temp(self: BaseManager, /, *args: Any, **kwds: Any) -> Any:
                return self._create(typeid, *args, **kwds)

            temp.__name__ = temp.__qualname__ = typeid
            temp.__doc__ = (
                f"Create a shared {typeid!r} object and return it (a proxy unless shared directly)."
            )
            setattr(cls, typeid, temp)


def _parse_address(address: Any) -> tuple[str | None, str | None]:
    if address is None:
        return None, None
    if not isinstance(address, str) or not address:
        raise ValueError(
            f"faasmp managers have no server socket, so address {address!r} cannot be used: "
            "pass None, another manager's .address, or a name (a non-empty string)"
        )
    if address.startswith(ADDRESS_PREFIX):
        run_id, sep, mid = address[len(ADDRESS_PREFIX) :].partition("/")
        if not sep or not run_id or not mid:
            raise ValueError(
                f"malformed manager address {address!r}; expected 'faasmp:<run id>/<manager id>'"
            )
        return run_id, mid
    return None, address


def _rebuild_manager(cls: type[BaseManager], ctx: Any, mid: str) -> BaseManager:
    m = cls.__new__(cls)
    BaseManager.__init__(m, None, None, "pickle", ctx)
    m._mid = mid
    session = m._attach()
    m._address = address_of(session.run_id, mid)
    m._kind = ManagerKind.CONNECTED
    m._state.value = State.STARTED
    return m


class _Server:
    """What :meth:`BaseManager.get_server` returns."""

    def __init__(self, manager: BaseManager) -> None:
        self._manager = manager

    @property
    def address(self) -> Any:
        return self._manager.address

    def serve_forever(self) -> None:
        """Start the manager and block until it is shut down (Ctrl-C shuts it down)."""
        if self._manager._state.value == State.INITIAL:
            self._manager.start()
        try:
            self._manager.join()
        except KeyboardInterrupt:
            pass
        finally:
            self._manager.shutdown()
