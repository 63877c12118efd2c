"""``faasmp.connection``: pipes between processes on different machines, and :func:`wait`.

:func:`Pipe` returns two :class:`Connection` objects with the stdlib's API and
semantics, backed by Redis lists (one list per direction):

* ``send``/``send_bytes`` push one signed message (``tag || body``, tag a 32-byte MAC,
  the format of :func:`faasmp.runtime.call.dumps`) with one Lua call that also
  checks that the reader is open and publishes on the list's channel while
  a :func:`wait` call waits on that end (it registers first).
  ``send_bytes`` stores the raw bytes (no pickling), ``send`` a cloudpickle,
  so — as in the stdlib — ``recv_bytes`` after ``send`` returns the pickle
  and ``recv`` after ``send_bytes(pickle.dumps(x))`` returns ``x``.
  A send does not wait for Redis' reply: it is collected with the thread's
  next command (``StateBackend.direct``), so a send followed by a ``recv`` is
  one round trip.  Commands of a thread still run in order.  Messages above
  64 KiB go as a pipeline of plain commands (Lua would copy them).  In a run
  whose processes all share the client's host (shared memory mode ``host``),
  bodies of 32 KiB and more go through a host file instead, and the list
  carries a small signed descriptor of it (:mod:`faasmp.runtime.bulk`).
* ``recv`` is one ``BLPOP`` (it returns as soon as a message is there);
  ``poll(timeout)`` blocks with a non-destructive ``BLMOVE`` and never takes a
  message, so a timeout never loses one.

**End of file, like OS pipes.**  Each end counts its open *handles* in Redis:
the two objects :func:`Pipe` returns, and every copy made by pickling one
(passing it to a ``Process``/``Pool``, putting it on a queue).  A handle is
released by ``close()``, by garbage collection, or — for a copy in a remote
``Process``, used or not — when that process exits, even if it was killed.  When no
handle of the other end is left, ``recv`` on an empty pipe raises
:class:`EOFError` and ``send`` raises :class:`BrokenPipeError` (like a socket,
at the latest on the send after the one that found the reader gone; that
message is dropped).  So the usual pattern works as with ``fork``::

    r, w = Pipe(duplex=False)
    p = Process(target=producer, args=(w,)); p.start()
    w.close()                      # the child's copy keeps the end open
    while True:
        try:
            item = r.recv()
        except EOFError:           # the child closed w or exited
            break

The last close of an end pushes a wake-up onto the other end's list, so a
blocked ``recv`` raises ``EOFError`` at once; a reader whose peer *process*
died without closing notices within ``heartbeat_interval`` seconds.  When both
ends are closed everywhere the pipe's keys are deleted.

Differences from the stdlib: there is no file descriptor (``fileno()`` raises
:class:`OSError`; use :func:`wait`), and a copy pickled but never unpickled
(for example a ``Process`` terminated before it ran) keeps its end open.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import secrets
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from .backends.redis.pipes import (
    WAITER_RENEW,
    RedisPipeEnd,
    create_pipe,
    pipe_wait_register,
    pipe_wait_unregister,
)
from .backends.state import CONNECTION_ERRORS, StateError
from .runtime import bulk, dsm, metrics, pickling
from .runtime.call import Signer, dumps_named, payload_size, pickle_parts, pickle_plain, signer
from .runtime.shared import SharedObject

if TYPE_CHECKING:
    from .backends.state import ScriptCall, StateBackend
    from .context import FaasContext
    from .runtime.session import Session

__all__ = ["Connection", "Pipe", "Signer", "sign_bytes", "verify_bytes", "wait"]

_MAC_SIZE = 32


# --- signing raw bytes -------------------------------------------------------
# Same format as faasmp.runtime.call.dumps (the 32-byte MAC of the body, then the
# body; see runtime.call.Signer), so a signed pickle is a signed byte string and vice versa.


def sign_bytes(body: bytes | memoryview, authkey: bytes) -> bytes:
    """``tag || body`` (tag: :class:`~faasmp.runtime.call.Signer`'s MAC) — ``dumps`` without pickling."""
    return signer(authkey).sign(body)


def verify_bytes(data: bytes, authkey: bytes) -> memoryview:
    """Check a payload made by :func:`sign_bytes` (or ``dumps``); return its body, uncopied."""
    return signer(authkey).verify(data)


def _current_proc_id() -> str | None:
    """The faasmp process id of the calling code when it runs in a remote Process."""
    from . import process  # noqa: PLC0415

    return getattr(process.current_process(), "_proc_id", None)


def _release_handle(session: Session, close: ScriptCall, keys: list[str], args: list[Any]) -> None:
    """Finalizer of a handle: release it in Redis (never raises; Redis may be gone)."""
    if session.closed:
        return
    with contextlib.suppress(*CONNECTION_ERRORS):
        close(keys=keys, args=args)


def _send_reply_handler(ref: weakref.ref[Connection]) -> Callable[[Any], None]:
    """What a deferred send's reply sets on its connection (held weakly: GC still closes it)."""

    def on_reply(reply: Any) -> None:
        conn = ref()
        if conn is None:
            return
        if isinstance(reply, Exception):
            conn._lost = reply
        elif reply == -1:
            conn._broken = True

    return on_reply


class Connection(SharedObject):
    """One end of a :func:`Pipe`, like :class:`multiprocessing.connection.Connection`.

    Blocking calls wait inside Redis.  See the module docstring for how end
    of file and handle copies work, and for the differences from the stdlib.
    """

    _kind = "pipe"
    #: Keys are deleted when the last handle of both ends is closed, not when
    #: the creating object goes away (remote copies may still use them).
    _key_suffixes = ()

    _end: int
    _duplex: bool
    _readable: bool
    _writable: bool
    _holder: str
    _closed: bool
    _bound: bool

    def __init__(self) -> None:
        raise TypeError("faasmp connections are created by faasmp.Pipe() (or ctx.Pipe())")

    # -- construction ---------------------------------------------------------
    @classmethod
    def _make(cls, first: Connection | None, ctx: FaasContext | None, end: int, duplex: bool) -> Connection:
        conn = cls.__new__(cls)
        if first is None:
            conn._init_shared(ctx)
        else:
            conn._ctx, conn._oid, conn._owner = first._ctx, first._oid, True
        conn._end = end
        conn._duplex = duplex
        conn._readable = duplex or end == 0
        conn._writable = duplex or end == 1
        conn._holder = secrets.token_hex(6)
        conn._setup()
        return conn

    def _setup(self) -> None:
        """Cache what the hot path needs and arm the release-on-GC finalizer."""
        session = self._session
        state: StateBackend = session.state
        e = self._end
        self._state = state
        self._authkey: bytes = session.authkey
        self._signer = signer(session.authkey)
        # Set in host mode: large bodies travel through host files (faasmp.runtime.bulk).
        self._host = session.host_memory
        self._ttl = int(session.config.key_ttl * 1000)
        self._cap = max(0.05, float(session.config.heartbeat_interval))
        lists = (self.key("d0"), self.key("d1"))
        holders = (self.key("h0"), self.key("h1"))
        waiters = (self.key("w0"), self.key("w1"))
        self._rkey = lists[e]
        self._own_h = holders[e]
        self._waiters = waiters[e]
        # Messages go through the thread's own connection (lowest latency).
        self._redis = RedisPipeEnd(
            state,
            read_list=lists[e],
            write_list=lists[1 - e],
            own_holders=holders[e],
            peer_holders=holders[1 - e],
            own_waiters=waiters[e],
            peer_waiters=waiters[1 - e],
            prefix=session.keys.prefix,
            ttl_ms=self._ttl,
        )
        # The TTL of the list and holders is refreshed by a send at most this
        # often (a tenth of it): a message lives at least 0.9 key_ttl.
        self._holder_refresh = session.config.key_ttl / 10
        self._holders_fresh_until = 0.0
        self._closed = False
        self._bound = False
        self._broken = False
        self._lost: BaseException | None = None
        self._on_send_reply = _send_reply_handler(weakref.ref(self))
        self._m_send = metrics.counter("pipe", f"{self._oid}/{e}", "send")
        self._m_recv = metrics.counter("pipe", f"{self._oid}/{e}", "recv")
        # The other end reads from our write list only if it is readable.
        close, keys, args = self._redis.closer(lists, self._holder, wake_peer=self._duplex or e == 1)
        self._releaser = weakref.finalize(self, _release_handle, session, close, keys, args)

    # -- pickling -----------------------------------------------------------
    def _getstate_extra(self) -> dict[str, Any]:
        """A copy is a new handle of the same end: registered now, before it travels.

        Registering at pickling time keeps the end open while the copy is on
        its way, even if this side closes its own handle right after
        ``Process.start()``.
        """
        self._check_closed()
        ticket = secrets.token_hex(6)
        self._redis.add_holder(ticket)
        return {"end": self._end, "duplex": self._duplex, "holder": ticket}

    def _setstate_extra(self, state: dict[str, Any]) -> None:
        self._end = state["end"]
        self._duplex = state["duplex"]
        self._readable = self._duplex or self._end == 0
        self._writable = self._duplex or self._end == 1
        self._holder = state["holder"]
        self._setup()
        # Unpickled in a remote Process (as its argument, or received there):
        # bind now, not at first use, so the handle is released when that
        # process ends even if it never used it; a reader waiting for EOF
        # would otherwise wait forever.
        if _current_proc_id():
            self._bind()

    def _bind(self) -> None:
        """Tie this copy to the remote Process using it, so it closes when that process ends."""
        self._bound = True
        proc_id = _current_proc_id()
        if proc_id:
            self._redis.bind(self._holder, proc_id)

    # -- checks (stdlib messages) ----------------------------------------------
    def _check_closed(self) -> None:
        if self._closed:
            raise OSError("handle is closed")

    def _check_readable(self) -> None:
        if not self._readable:
            raise OSError("connection is write-only")

    def _check_writable(self) -> None:
        if not self._writable:
            raise OSError("connection is read-only")

    def _bad_message_length(self) -> None:
        if self._writable:
            self._readable = False
        else:
            self.close()
        raise OSError("bad message length")

    @property
    def closed(self) -> bool:
        """True if the connection is closed."""
        return self._closed

    @property
    def readable(self) -> bool:
        """True if the connection is readable."""
        return self._readable

    @property
    def writable(self) -> bool:
        """True if the connection is writable."""
        return self._writable

    def fileno(self) -> int:
        """Always raises :class:`OSError`: a faasmp connection is not a file descriptor.

        Use :func:`faasmp.connection.wait` (or :meth:`poll`) to wait for input.
        """
        self._check_closed()
        raise OSError(
            errno.EBADF,
            "a faasmp Connection lives in Redis and has no file descriptor; "
            "use faasmp.connection.wait() or Connection.poll() instead of select()",
        )

    def close(self) -> None:
        """Close this handle; the other end sees EOF once every handle of this end is closed."""
        if not self._closed:
            self._closed = True
            self._releaser()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "duplex" if self._duplex else ("read-only" if self._end == 0 else "write-only")
        status = " closed" if self._closed else ""
        return f"<faasmp.connection.Connection {self._oid}/{self._end} {mode}{status}>"

    # -- sending ----------------------------------------------------------------
    def send_bytes(self, buf: Any, offset: int = 0, size: int | None = None) -> None:
        """Send the bytes of a bytes-like object (stored raw, not pickled)."""
        self._check_closed()
        self._check_writable()
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast("B")
        n = m.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        self._send_body(m[offset : offset + size])

    def send(self, obj: Any) -> None:
        """Send a picklable object (cloudpickle: lambdas and ``__main__`` classes too)."""
        self._check_closed()
        self._check_writable()
        # A large bytes/bytearray is written as it is; plain data takes the C pickler.
        body: Any = pickle_parts(obj)
        if body is None:
            body = pickle_plain(obj)
        if body is None:
            try:
                body = pickling.dumps(obj)
            except Exception:  # noqa: BLE001 - redo it to raise one clear error naming the pipe
                blob = memoryview(dumps_named(obj, self._authkey, f"an object sent on {self!r}"))
                self._send_signed(blob[:_MAC_SIZE], blob[_MAC_SIZE:])
                return
        self._send_body(body)

    def _send_body(self, body: Any) -> None:
        """Sign and send *body* (bytes-like, or a tuple of parts); large ones via a host file in host mode."""
        self._prepare_send()
        nbytes = _MAC_SIZE + payload_size(body)  # what the user sent, wherever its bytes go
        mac, body, token = bulk.seal(self._signer, self._host, body, f"pipe {self._oid}")
        if token is None:
            self._push(mac, body, nbytes, self._on_send_reply)
            return
        # A message through a host file: if Redis reports it dropped (the reader
        # was closed) or lost, its file goes too.
        on_reply, host = self._on_send_reply, self._host

        def dropped_file_goes(reply: Any) -> None:
            if isinstance(reply, Exception) or reply == -1:
                bulk.discard(host, token)
            on_reply(reply)

        self._push(mac, body, nbytes, dropped_file_goes)

    def _send_signed(self, mac: Any, body: Any) -> None:
        """Send one signed message: the signature and the body are written as they are."""
        self._prepare_send()
        self._push(mac, body, len(mac) + payload_size(body), self._on_send_reply)

    def _prepare_send(self) -> None:
        dsm.release()  # a send is a release of shared memory
        if not self._bound:
            self._bind()
        self._check_earlier_sends()

    def _push(self, mac: Any, body: Any, nbytes: int, on_reply: Callable[[Any], None]) -> None:
        # The reply is collected with this thread's next command: a send does
        # not wait (see StateBackend.direct); a closed reader shows on a later send.
        now = time.monotonic()
        refresh = now >= self._holders_fresh_until
        if refresh:
            self._holders_fresh_until = now + self._holder_refresh
        self._redis.pipe_send(mac, body, on_reply, refresh=refresh)
        self._m_send.add(nbytes)
        self._check_earlier_sends()

    def _check_earlier_sends(self) -> None:
        """Report what the replies of earlier (deferred) sends said."""
        if self._broken:
            raise BrokenPipeError(errno.EPIPE, "the other end of the pipe is closed")
        lost, self._lost = self._lost, None
        if lost is not None:
            raise StateError(f"an earlier message sent on {self!r} was not delivered: {lost}")

    # -- receiving ----------------------------------------------------------------
    def _recv_body(self, *, copied: bool = True) -> bytes | memoryview:
        """Block until a message arrives and return its verified body (EOFError at end of file).

        A memoryview of the received element, or the bytes of a host file (a
        large message in host mode: faasmp.runtime.bulk): a new ``bytes``
        object, or with *copied* False a view of the thread's receive buffer
        (for a caller that copies them out: pass the body to ``recycle``).
        """
        t0 = time.perf_counter()
        take = None if copied else self._redis.take_buffer
        body = bulk.unseal(self._signer, self._host, self._take_blob(), f"pipe {self._oid}", take)
        self._m_recv.since(t0, _MAC_SIZE + len(body))
        return body

    def _take_blob(self) -> bytes | bytearray | memoryview:
        if not self._bound:
            self._bind()
        redis, cap = self._redis, self._cap
        while True:
            item = redis.pipe_recv(cap)
            if item:
                return item
            # A wake-up, or a quiet period: take a message or detect EOF atomically
            # (this also notices a peer process that died without closing).
            status, msg = redis.pipe_recv_now()
            if msg is not None:
                return msg
            if status == 2:
                raise EOFError

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        """Receive one message as bytes; EOFError if the other end is closed and nothing is left.

        A message longer than *maxlength* raises ``OSError("bad message
        length")`` and, as in the stdlib, leaves the connection unusable for reading.
        """
        self._check_closed()
        self._check_readable()
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        body = self._recv_body()
        dsm.acquire()  # a receive is an acquire of shared memory
        if maxlength is not None and len(body) > maxlength:
            self._bad_message_length()
        if isinstance(body, bytes):
            return body
        out = body.tobytes()
        self._redis.recycle(body)
        return out

    def recv_bytes_into(self, buf: Any, offset: int = 0) -> int:
        """Receive one message into a writable buffer at byte *offset*; return its size.

        Raises :class:`multiprocessing.BufferTooShort` (carrying the message)
        if it does not fit.
        """
        self._check_closed()
        self._check_readable()
        with memoryview(buf) as m, m.cast("B") as target:
            itemsize = m.itemsize
            bytesize = itemsize * len(m)
            if offset < 0:
                raise ValueError("negative offset")
            if offset > bytesize:
                raise ValueError("offset too large")
            body = self._recv_body(copied=False)
            dsm.acquire()
            size = len(body)
            if bytesize < offset + size:
                raise multiprocessing.BufferTooShort(bytes(body))
            target[offset : offset + size] = body
            self._redis.recycle(body)
            return size

    def recv(self) -> Any:
        """Receive one object sent with :meth:`send`; EOFError at end of file."""
        self._check_closed()
        self._check_readable()
        body = self._recv_body(copied=False)
        dsm.acquire()
        obj = pickling.loads(body)
        self._redis.recycle(body)  # the unpickled object holds no view of it: pickle copies
        return obj

    def _poll_now(self) -> int:
        if not self._bound:
            self._bind()
        return self._redis.pipe_poll()

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether a message (or EOF) is waiting; waits up to *timeout* seconds (None = forever).

        Never takes the message: it blocks with a non-destructive BLMOVE.
        """
        self._check_closed()
        self._check_readable()
        if self._poll_now():
            return True
        if timeout is not None and timeout <= 0:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = self._cap if deadline is None else min(self._cap, deadline - time.monotonic())
            if left <= 0:
                return False
            # Returns when the list has an element (a message or a wake-up);
            # the capped wait also notices a peer process that died.
            self._redis.pipe_wait(max(left, 0.001))
            if self._poll_now():
                return True

    # -- wait() support ------------------------------------------------------------
    def _wait_ready(self) -> bool:
        return self._poll_now() != 0


def Pipe(duplex: bool = True, *, ctx: FaasContext | None = None) -> tuple[Connection, Connection]:
    """Two connected :class:`Connection` objects, like :func:`multiprocessing.Pipe`.

    With ``duplex=False`` the first can only receive and the second only send.
    """
    if not isinstance(duplex, bool):
        raise TypeError(f"duplex must be a bool, not {type(duplex).__name__}")
    c0 = Connection._make(None, ctx, 0, duplex)
    c1 = Connection._make(c0, ctx, 1, duplex)
    proc_id = _current_proc_id() or ""
    create_pipe(c0._state, [(c._own_h, c._holder, proc_id) for c in (c0, c1)], c0._ttl)
    c0._bound = c1._bound = True
    return c0, c1


# --- wait --------------------------------------------------------------------


class Waitable(Protocol):
    """What :func:`wait` accepts besides connections: a readiness check, a change channel, a session."""

    def ready(self) -> bool: ...

    @property
    def channel(self) -> str: ...

    @property
    def session(self) -> Any: ...


#: wait() re-checks every object at least this often (s): catches process
#: sentinels and pipe ends lost without a publish.
_WAIT_CAP = 1.0


def _wait_entry(obj: Any) -> tuple[Callable[[], bool], str, Any]:
    if isinstance(obj, Connection):
        obj._check_closed()
        obj._check_readable()
        return obj._wait_ready, obj._rkey, obj._session
    if all(hasattr(obj, a) for a in ("ready", "channel", "session")):
        return obj.ready, obj.channel, obj.session
    raise TypeError(
        f"faasmp.connection.wait() cannot wait on {obj!r}: pass faasmp Connection objects "
        "or Process.sentinel objects (faasmp has no file descriptors or sockets)"
    )


class _WaiterRegistration:
    """wait()'s registration on the pipe ends it waits on: their sends publish only while it lives."""

    def __init__(self, connections: list[Connection]) -> None:
        self._token = secrets.token_hex(8)
        by_state: dict[int, tuple[StateBackend, list[str]]] = {}
        for conn in connections:
            by_state.setdefault(id(conn._state), (conn._state, []))[1].append(conn._waiters)
        self._groups = list(by_state.values())
        self._renewed = 0.0

    def register(self) -> None:
        """Register (or renew): one round trip per state backend (one, nearly always)."""
        for state, keys in self._groups:
            pipe_wait_register(state, keys, self._token)
        self._renewed = time.monotonic()

    def renew_if_due(self) -> None:
        if time.monotonic() - self._renewed >= WAITER_RENEW:
            self.register()

    def unregister(self) -> None:
        """Never raises for a lost server: the registration expires by itself."""
        for state, keys in self._groups:
            with contextlib.suppress(*CONNECTION_ERRORS, StateError):
                pipe_wait_unregister(state, keys, self._token)


def wait(object_list: Iterable[Any], timeout: float | None = None) -> list[Any]:
    """Wait until an object in *object_list* is ready; return the ready ones.

    Like :func:`multiprocessing.connection.wait`: *object_list* holds
    connections (ready when :meth:`Connection.poll` would return True, which
    includes end of file) and ``Process.sentinel`` objects (ready when the
    process has ended).  Returns an empty list if *timeout* seconds pass
    first; ``None`` waits forever.

    It registers on the connections (their sends publish only while a wait()
    is registered) and subscribes to the objects' change channels before it
    checks them again, so a change between the first check and the wait is
    never missed, and blocks in Redis rather than polling.
    """
    objects = list(object_list)
    entries = [(obj, *_wait_entry(obj)) for obj in objects]

    def ready_now() -> list[Any]:
        return [obj for obj, ready, _, _ in entries if ready()]

    ready = ready_now()
    if ready or not entries or (timeout is not None and timeout <= 0):
        return ready
    session = entries[0][3]
    # Registered before subscribing, re-checked after: a send that saw no
    # registration pushed its message before it, and the check finds it.
    waiters = _WaiterRegistration([obj for obj in objects if isinstance(obj, Connection)])
    waiters.register()
    try:
        sub = session.state.subscribe(*{channel for _, _, channel, _ in entries})
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                ready = ready_now()
                if ready:
                    return ready
                left = _WAIT_CAP if deadline is None else min(_WAIT_CAP, deadline - time.monotonic())
                if left <= 0:
                    return []
                # A message only wakes us; readiness is re-checked above.  The
                # cap also catches workers (and pipe ends) lost without a publish.
                sub.get_message(timeout=left)
                waiters.renew_if_due()
        finally:
            sub.close()
    finally:
        waiters.unregister()
