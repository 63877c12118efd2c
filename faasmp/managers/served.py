"""Served objects: referents that cannot live in Redis, served by a thread of the manager's process."""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ..backends.redis.managers import RedisServedCalls
from ..runtime.call import dumps, loads, pickling_failed
from .common import ManagerShutdownError

if TYPE_CHECKING:
    from .proxy import BaseProxy


def _served_calls(session: Any, mid: str) -> RedisServedCalls:
    return RedisServedCalls(session.state, session.keys, mid, int(session.config.key_ttl * 1000))


#: The running local servers of this process, by manager id.
LOCAL_SERVERS: weakref.WeakValueDictionary[str, LocalServer] = weakref.WeakValueDictionary()


class LocalServer:
    """Serves the referents a manager could not store in Redis, from the manager's process.

    A registered type whose objects do not pickle (a generator, an object
    holding an open file or a thread lock) cannot live in Redis.  Like the
    stdlib's manager server, the process that created the manager then keeps
    the object, and a thread serves method calls from other processes: a
    caller pushes a signed request on the manager's request list and blocks in
    ``BLPOP`` on its own reply list; the thread blocks in ``BLPOP`` on the
    request list.  Calls in the manager's own process run directly.  Calls on
    one object are serialized.  The objects die with the manager (shutdown) or
    with its process; callers then get :class:`ManagerShutdownError`.
    """

    _BEAT = 1.0  # seconds between liveness renewals while idle

    def __init__(self, session: Any, mid: str) -> None:
        self.session = session
        self.mid = mid
        self.calls = _served_calls(session, mid)
        self.objects: dict[str, Any] = {}
        self.lock = threading.RLock()
        self._stopping = False
        self._renew()
        LOCAL_SERVERS[mid] = self
        self._thread = threading.Thread(target=self._serve, name=f"faasmp-manager-{mid}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        self.calls.serve_renew(int(self._BEAT * 5000))

    def keep(self, oid: str, value: Any) -> None:
        with self.lock:
            self.objects[oid] = value

    def forget(self, oid: str) -> None:
        """The object's last reference is gone: drop it (as the stdlib's server does)."""
        with self.lock:
            self.objects.pop(oid, None)

    def call(self, oid: str, methodname: str, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        with self.lock:
            try:
                obj = self.objects[oid]
            except KeyError:
                raise ManagerShutdownError(
                    f"manager object {oid} no longer exists (its manager shut down)"
                ) from None
            if methodname == "#GETVALUE":
                return obj
            return getattr(obj, methodname)(*args, **kwds)

    def _serve(self) -> None:
        calls = self.calls
        authkey = self.session.authkey
        while not self._stopping and not self.session.closed:
            try:
                item = calls.serve_next(self._BEAT)
                self._renew()
            except Exception:  # noqa: BLE001 - the run is ending
                return
            if item is None:
                continue
            try:
                reply_key, oid, methodname, args, kwds = loads(item, authkey)
            except Exception:  # noqa: BLE001 - an unsigned or stop message
                continue
            try:
                reply: tuple[bool, Any] = (True, self.call(oid, methodname, args, kwds))
            except BaseException as exc:  # noqa: BLE001 - sent to the caller, like the stdlib's server
                reply = (False, exc)
            try:
                blob = dumps(reply, authkey)
            except Exception as exc:  # noqa: BLE001
                what = "result" if reply[0] else "exception"
                err = pickling_failed(
                    f"the {what} of {methodname}() of manager object {oid} could not be sent back: "
                    f"{type(exc).__name__}: {exc}",
                    exc,
                )
                blob = dumps((False, err), authkey)
            with contextlib.suppress(Exception):  # the run is ending: nobody to reply to
                calls.serve_reply(reply_key, blob)

    def terminate(self) -> None:
        """Stop serving and drop the objects (the manager shut down)."""
        self._stopping = True
        LOCAL_SERVERS.pop(self.mid, None)
        with self.lock:
            self.objects.clear()
        with contextlib.suppress(Exception):
            self.calls.serve_stop()

    @classmethod
    def request(cls, proxy: BaseProxy, methodname: str, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        """Call *methodname* on a referent served by another process; blocks in Redis."""
        conn = proxy._conn()
        calls = _served_calls(conn.session, proxy._mid)
        reply_key = calls.new_reply_key()
        if not calls.call_send(dumps((reply_key, proxy._oid, methodname, args, kwds), conn.authkey)):
            raise proxy._closed_error()
        while True:
            item = calls.call_wait(reply_key, cls._BEAT * 2)
            if item is not None:
                break
            if not calls.server_alive():  # the manager's process stopped serving
                raise ManagerShutdownError(
                    f"{proxy._describe()}: the object lives in the process that created its manager "
                    "(it cannot be pickled into Redis), and that process no longer serves it "
                    "(the manager shut down or the process ended)"
                )
        ok, value = loads(item, conn.authkey)
        if not ok:
            raise value
        return value
