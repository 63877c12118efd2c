"""Commands on a connection owned by the calling thread (``StateBackend.direct``).

The hot path of every pipe message, queue item, lock and shared-memory
transfer: no connection pool, retries or hooks, replies read later
(deferred) where the caller need not wait for them.  Part of the Redis state
backend (:mod:`faasmp.backends.state` builds it for each :class:`RedisState`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import errors as redis  # redis-py's exception types, without its package (see errors.py)
from .resp import (
    SPIN_WINDOW,
    ReplySpin,
    SpinCounter,
    _LeanPacker,
    _read_bulk_replies,
    _read_pop_reply,
    _read_reply,
    _small_reply,
    _take_ready_bytes,
    _wait_read,
    _whole_small_pop,
    _write_raw,
    not_enough_marker,
)
from .state import (
    _BLOCKING,
    _DROPPED,
    _MAX_BEHIND,
    DeferredScriptCall,
    Key,
    ScriptCall,
    StateLostError,
    _dropped,
)

if TYPE_CHECKING:
    from .state import DirectState, RedisState

logger = logging.getLogger(__name__)


#: The largest receive buffer a thread keeps for its next large popped
#: element (:meth:`_DirectRedis.recycle`): bigger elements get one each.
RECEIVE_BUFFER_MAX = 16 << 20


def _usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS): every CPU
        return os.cpu_count() or 1


def _forget_connections(ref: weakref.ref[_DirectRedis]) -> None:
    """After a fork, in the child: the parent's per-thread connections are not this process's."""
    direct = ref()
    if direct is not None:
        direct._local = threading.local()


class _ThreadEnd:
    """Reads a thread's deferred replies when the thread ends, before its connection closes.

    A deferred command (a large pipe message's batch, a queue put) is written
    at once and its reply read by the thread's next command.  A thread that
    ended right after one dropped its connection with replies unread; the
    server, failing to write them to the closed socket, dropped the client
    and the commands of the batch it had not run yet (the PUBLISH of a large
    pipe message: a ``wait()`` woke only at its re-check).  Kept in the
    thread's local data with the thread's connection, so it goes when the
    thread does.
    """

    __slots__ = ("conn", "pending", "pid")

    def __init__(self, conn: Any, pending: list[tuple[Callable[[Any], object], int]]) -> None:
        self.conn, self.pending, self.pid = conn, pending, os.getpid()

    def __del__(self) -> None:
        pending, conn = self.pending, self.conn
        # Not in a forked child (the parent's socket) nor while the interpreter shuts down.
        if not pending or os.getpid() != self.pid or getattr(conn, "_sock", None) is None:
            return
        try:
            import sys  # noqa: PLC0415

            if sys.is_finalizing():
                return
            taken = pending[:]
            pending.clear()
            for on_reply, n in taken:
                replies: list[Any] = []
                for _ in range(n):
                    try:
                        replies.append(conn.read_response())
                    except redis.exceptions.ResponseError as exc:
                        replies.append(exc)
                with contextlib.suppress(Exception):
                    on_reply(replies[0] if n == 1 else replies)
        except Exception:  # noqa: BLE001 - a thread's end: nobody to tell; a lost reply is the callback's loss
            logger.debug("faasmp: reading a finished thread's deferred replies failed", exc_info=True)


class _DirectRedis:
    """Commands on a connection owned by the calling thread: no pool, retries or hooks.

    redis-py's client spends most of a command's time outside the socket
    (pool checkout with a readiness probe, retry wrapper, observability
    hooks): ~3x a bare send/receive on loopback.  Pipe and queue messages go
    through here.  Each thread gets its own connection (made on first use,
    again after a fork), so a blocking command blocks only its thread; an
    interrupted command drops the connection, like the client does.

    **Deferred replies.**  :meth:`send_deferred` writes a command and returns
    without waiting; its reply is read (and handed to a callback) just before
    the next command of the same thread is answered — on this connection, or
    on the pooled client, whose commands first :meth:`flush`.  So commands of
    one thread still run in program order, a message send costs no wait of
    its own, and a send followed by a receive is one round trip.  A send
    drains what is outstanding first, so usually one reply is outstanding per
    thread; a lock release written ``behind`` others (a release of a held
    lock) adds its reply to the list without reading, up to ``_MAX_BEHIND``.
    The replies are read in the order their commands were written; an
    exception a callback returns is raised by the command that read it, once
    that command's own reply is read.

    **Reply waits.**  A thread waiting for a reply first busy-polls its
    connection for up to :attr:`spin_window` seconds (non-blocking reads),
    then sleeps in ``poll()``; each connection backs off on its own when its
    replies come later than that (:class:`~faasmp.backends.resp.ReplySpin`).
    :attr:`spin_counter` counts the replies taken while spinning.
    """

    def __init__(self, connect: Callable[[], Any], owner: RedisState | DirectState) -> None:
        """*connect* makes a new (not yet connected) connection: redis-py's or a RespConnection."""
        self._owner = owner
        self._connect = connect
        self._local = threading.local()
        self._conns: weakref.WeakSet[Any] = weakref.WeakSet()
        self._loaded: set[str] = set()
        self._writes = owner._writes
        self._blpop_cmds: dict[tuple[Key, float], list[Any]] = {}
        #: Replies taken while busy-polling, and spins that ran out (see ReplySpin).
        self.spin_counter = SpinCounter()
        # On one CPU a spin can only hold the core the server needs: the
        # server's reply comes when the client's write preempts it, or after
        # the client sleeps (client and server pinned to one core: same p50,
        # and up to 7% of a set's spins ran out).  So none there.
        self._spin_window = SPIN_WINDOW if _usable_cpus() > 1 else 0.0
        # A forked child must not use its parent's connections: it forgets
        # them at the fork instead of comparing os.getpid() on every command
        # (a system call: 2 of the ~12 a pipe round trip made per side).
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_connections(ref))

    def _conn(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn._command_packer = _LeanPacker()
            # One adaptive spin for plain commands' replies, one for blocking
            # pops: a pop that waits for a message must not make the next
            # command's reply sleep (see ReplySpin).
            conn._faasmp_spin = ReplySpin(self._spin_window, self.spin_counter)
            conn._faasmp_spin_wait = ReplySpin(self._spin_window, self.spin_counter)
            conn._faasmp_not_enough = not_enough_marker(conn._parser)
            local.conn, local.pending = conn, []
            # Never reassigned (emptied in place): the thread's end reads what is left in it.
            local.end = _ThreadEnd(conn, local.pending)
            local.held = local.error = None
            self._conns.add(conn)
        return conn

    @property
    def spin_window(self) -> float:
        """Seconds a thread busy-polls for a reply before it sleeps in ``poll()`` (0: never spins)."""
        return self._spin_window

    @spin_window.setter
    def spin_window(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"spin_window must be >= 0 seconds, got {seconds!r}")
        self._spin_window = seconds
        for conn in list(self._conns):
            conn._faasmp_spin.window = conn._faasmp_spin_wait.window = seconds

    def _write(self, conn: Any, packed: list[Any]) -> None:
        """Write *packed* (RESP chunks), preceded by a held command (see :meth:`send_deferred`)."""
        local = self._local
        held = local.held
        if held is not None:
            local.held = None
            # One chunk, one sendall: redis-py writes each chunk with its own
            # syscall, and a second one wakes the server twice (a held lock
            # script + a pull as two chunks cost as much as two round trips).
            if sum(map(len, held)) <= _LeanPacker._BIG:
                packed = [b"".join((*held, *packed[:1])), *packed[1:]]
            else:
                packed = [*held, *packed]
        sock = conn._sock
        if len(packed) == 1 and type(sock) is socket.socket:
            self._writes.writes += 1
            conn._unread = True  # the next read is a wait (see send_packed_command)
            _write_raw(conn, sock, packed[0])
            return
        conn.send_packed_command(packed, check_health=False)

    def _drain(self, conn: Any) -> None:
        """Read the outstanding deferred replies, if any, and hand each to its callback.

        A callback that returns an exception (a deferred lock release that
        Redis refused) has it raised by the thread's current command once
        that command's own reply is read (:meth:`_raise_late`): never dropped.
        """
        local = self._local
        outstanding = local.pending
        if not outstanding:
            return
        pending = outstanding[:]
        outstanding.clear()  # first: a flush from a GC finalizer must not read them twice
        _take_ready_bytes(conn, conn._faasmp_spin)
        read = conn.read_response
        i = 0
        for on_reply, n in pending:
            replies: list[Any] = []
            for _ in range(n):
                try:
                    replies.append(read())
                except redis.exceptions.ResponseError as exc:
                    replies.append(exc)
                except _DROPPED as exc:
                    # The deferred commands may not have run: tell their owners (a
                    # queue then fails its next put), then fail the command being sent.
                    for later, _ in pending[i:]:
                        with contextlib.suppress(Exception):
                            later(_dropped(exc, self._owner._where))
                    raise
            i += 1
            # (try/except, not contextlib.suppress: this runs for every reply.)
            try:
                late = on_reply(replies[0] if n == 1 else replies)
            except Exception:  # noqa: BLE001 - a callback's bug must not break the stream
                continue
            if late is not None and isinstance(late, BaseException) and local.error is None:
                local.error = late

    def _raise_late(self) -> None:
        """Raise the error a deferred reply read by this thread's last command turned out to be."""
        local = self._local
        error = local.error
        if error is not None:
            local.error = None
            raise error

    def flush(self) -> None:
        """Wait for this thread's deferred replies (no-op if there is none); raise a late error."""
        local = self._local
        pending = getattr(local, "pending", None)
        if pending is None:
            return  # no connection in this thread (yet, or since a fork)
        if pending:
            try:
                if local.held is not None:
                    self._write(local.conn, [])
                self._drain(local.conn)
            except BaseException as exc:
                local.pending.clear()
                if isinstance(exc, _DROPPED):
                    raise _dropped(exc, self._owner._where) from exc
                raise
        self._raise_late()

    def pending(self) -> bool:
        """Whether this thread has a deferred reply not read yet."""
        local = self._local
        return bool(getattr(local, "pending", None))  # a forked child starts with a fresh local

    def _send_commands(self, commands: Sequence[Sequence[Any]]) -> Any:
        """Write *commands* in one packed write on this thread's connection (replies unread)."""
        if self._owner._lost is not None:
            raise StateLostError(*self._owner._lost.args)
        conn = self._conn()
        try:
            self._write(conn, conn.pack_commands(commands))
            self._drain(conn)
        except BaseException as exc:
            failed = self._failed(exc)
            if failed is exc:
                raise
            raise failed from exc
        return conn

    def _failed(self, exc: BaseException) -> BaseException:
        """The error to raise for *exc* (the connection was dropped with it).

        A deferred command still waiting for its reply went down with the
        connection: its callback hears about it (it may not have run).
        """
        local = self._local
        outstanding = getattr(local, "pending", None)
        pending = outstanding[:] if outstanding else []
        if outstanding:
            outstanding.clear()
        local.held = None
        if isinstance(exc, _DROPPED):
            error = _dropped(exc, self._owner._where)
            for on_reply, _ in pending:
                with contextlib.suppress(Exception):
                    on_reply(error)
            return error
        return exc

    def _read(self, conn: Any, args: Sequence[Any]) -> Any:
        """Read the reply to *args*: a blocking command may take its own wait plus ``read_timeout``."""
        position = _BLOCKING.get(str(args[0]).upper()) if args else None
        if position is None:
            return _read_reply(conn, conn._faasmp_spin)  # bounded by the connection's socket_timeout
        wait = float(args[position])
        # wait 0 is "forever" to Redis: the typed methods never send it (they
        # split long waits); a raw one keeps its meaning and is not bounded.
        timeout = wait + self._owner.read_timeout if wait > 0 else None
        return _read_reply(conn, conn._faasmp_spin_wait, timeout=timeout)

    def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (Redis errors raise as with the client)."""
        if self._owner._lost is not None:
            raise StateLostError(*self._owner._lost.args)
        conn = self._conn()
        try:
            if self._owner.sampler.due():
                reply = self._owner.sampler.timed(args[0], self._send_read, (conn, *args), {})
            else:
                self._write(conn, conn.pack_command(*args))
                self._drain(conn)
                reply = self._read(conn, args)
        except redis.exceptions.ResponseError:
            raise
        except BaseException as exc:
            failed = self._failed(exc)
            if failed is exc:
                raise
            raise failed from exc
        if self._local.error is not None:
            self._raise_late()
        return reply

    def command(self, *fixed: Key | int) -> Callable[..., Any]:
        """A plain command whose first arguments are *fixed*: ``call(*rest)`` sends it, returns its reply.

        The fixed part (``HGET`` and a hash's key, say) is packed once: a
        manager dict's get then costs one formatting of its field, not a
        packing of the whole command (~0.5 us less per call).  Not for
        blocking commands, whose replies wait longer (use :meth:`blpop`...).
        """
        name = fixed[0].decode() if isinstance(fixed[0], bytes) else str(fixed[0])
        if name.upper() in _BLOCKING:
            raise ValueError(f"{name} is a blocking command: use blpop, blpop_buffer or blmove_rotate")
        prefix, n_prefix = _LeanPacker.prefix(*fixed), len(fixed)
        execute_prefixed, name = self._execute_prefixed, name.upper()

        def call(*args: Any) -> Any:
            return execute_prefixed(prefix, n_prefix, args, name)

        return call

    def _send_read(self, conn: Any, *args: Any) -> Any:
        self._write(conn, conn.pack_command(*args))
        self._drain(conn)
        return self._read(conn, args)

    def _execute_prefixed(
        self, prefix: bytes, n_prefix: int, args: Sequence[Any], name: str = "EVALSHA"
    ) -> Any:
        """:meth:`execute` of a non-blocking command *name* whose first *n_prefix* arguments are *prefix*."""
        if self._owner._lost is not None:
            raise StateLostError(*self._owner._lost.args)
        conn = self._conn()
        try:
            packed = conn._command_packer.pack_prefixed(prefix, n_prefix, args)
            if self._owner.sampler.due():
                reply = self._owner.sampler.timed(name, self._send_read_packed, (conn, packed), {})
            else:
                reply = self._send_read_packed(conn, packed)
        except redis.exceptions.ResponseError:
            raise
        except BaseException as exc:
            failed = self._failed(exc)
            if failed is exc:
                raise
            raise failed from exc
        if self._local.error is not None:
            self._raise_late()
        return reply

    def _send_read_packed(self, conn: Any, packed: list[Any]) -> Any:
        self._write(conn, packed)
        self._drain(conn)
        return _read_reply(conn, conn._faasmp_spin)  # not a blocking command: bounded by socket_timeout

    def send_deferred(self, on_reply: Callable[[Any], None], *args: Any, hold: bool = False) -> None:
        """Send one command; *on_reply* gets its reply (or error) later (see the class doc).

        *hold*: do not even write it yet; it goes out in the same write as
        this thread's next command (or :meth:`flush`), which must follow at
        once.  Two commands of two structures (a lock's acquire and a pull of
        shared memory) thus cost one write and one wait.
        """
        self._send_deferred_prefixed(on_reply, b"", 0, args, hold)

    def _send_deferred_prefixed(
        self,
        on_reply: Callable[[Any], object],
        prefix: bytes,
        n_prefix: int,
        args: Sequence[Any],
        hold: bool,
        behind: bool = False,
    ) -> None:
        """:meth:`send_deferred` of a command whose first *n_prefix* arguments are *prefix*.

        *behind*: write it now (with a held command) but read no reply yet:
        its reply is read after the ones already outstanding, by the
        thread's next command.  A lock release thus costs no wait at all.
        """
        if self._owner._lost is not None:
            raise StateLostError(*self._owner._lost.args)
        conn = self._conn()
        local = self._local
        try:
            packed = conn._command_packer.pack_prefixed(prefix, n_prefix, args)
            if hold:
                if local.held is not None:
                    self.flush()  # one held command at a time
                # Replies already outstanding (a deferred release) are read
                # before this one's, in the order the commands were written.
                local.held = packed
            elif behind and len(local.pending) < _MAX_BEHIND:
                # Listed first: an interrupt after the write must not lose track of the reply.
                local.pending.append((on_reply, 1))
                self._write(conn, packed)
                return
            else:
                self._write(conn, packed)
                self._drain(conn)
        except BaseException as exc:
            failed = self._failed(exc)
            if failed is exc:
                raise
            raise failed from exc
        local.pending.append((on_reply, 1))
        if local.error is not None:
            self._raise_late()

    def _waits(self, timeout: float) -> Iterator[float]:
        """The server-side waits that make up *timeout* (0 = forever), none longer than ``read_timeout``.

        A reply that has not come within its wait plus ``read_timeout`` means
        the server froze; splitting keeps that bound for long and endless
        waits.  Nothing is lost between two waits: a blocking pop that timed
        out took nothing, and the next one sees what arrived meanwhile.
        """
        step = self._owner.read_timeout
        if timeout and timeout <= step:
            yield timeout
            return
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            if deadline is None:
                yield step
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return
            # Redis reads a wait under 1 ms as 0, which means forever.
            yield min(step, max(left, 0.001))

    def send_many_deferred(self, on_reply: Callable[[Any], None], commands: Sequence[Sequence[Any]]) -> None:
        """Send raw commands in one write without waiting: a deferred :meth:`execute_many`.

        *on_reply* later gets the list of replies (errors as exception
        objects), or one exception if the connection dropped.  A producer of
        large items thus overlaps Redis' work on one item with preparing the
        next; the thread's next command collects the replies.
        """
        self._send_commands(commands)
        self._local.pending.append((on_reply, len(commands)))
        if self._local.error is not None:
            self._raise_late()

    def blpop(self, keys: Sequence[Key], timeout: float) -> tuple[bytes, bytes] | None:
        """Pop from the first non-empty list, waiting up to *timeout* (0 = forever)."""
        for wait in self._waits(timeout):
            reply = self.execute("BLPOP", *keys, wait)
            if reply is not None:
                return reply  # type: ignore[no-any-return]
        return None

    def blpop_buffer(self, key: Key, timeout: float) -> bytes | bytearray | memoryview | None:
        """Pop from *key*, waiting up to *timeout* (0 = forever); the element is read into one buffer.

        hiredis reads a reply into its own 32 KiB buffer, then copies it into
        a bytes object: most of the CPU a 1 MiB message costs its reader.
        Here an element over 64 KiB goes from the socket straight into a
        buffer (``recv_into``): a memoryview of the thread's receive buffer
        (see :meth:`recycle`) or of a new ``bytearray``.  Smaller ones, and
        any reply when the parser already holds bytes of it (they came with a
        deferred reply) or is not hiredis, are read by the parser as usual.
        Long waits are split like :meth:`blpop`'s, each read bounded by its
        wait plus ``read_timeout``.
        """
        if 0 < timeout <= self._owner.read_timeout:  # one wait: no generator (a pipe's recv)
            return self._blpop_buffer_once(key, timeout)
        for wait in self._waits(timeout):
            reply = self._blpop_buffer_once(key, wait)
            if self._local.error is not None:
                self._raise_late()
            if reply is not None:
                return reply
        return None

    def take_buffer(self, n: int) -> memoryview:
        """A writable memoryview of *n* bytes to receive into: the thread's receive buffer if it fits.

        The buffer is taken out of the thread's hands until :meth:`recycle`
        gives it back, so a receive nested in the consumer of an earlier one
        (an unpickled object's ``__setstate__`` that reads a queue) gets a
        buffer of its own.
        """
        local = self._local
        buf = getattr(local, "rbuf", None)
        if buf is not None and len(buf) >= n:
            local.rbuf = None
            return memoryview(buf)[:n]
        return memoryview(bytearray(n))

    def recycle(self, body: object) -> None:
        """Give a consumed element's buffer back to this thread for its next large element.

        Call it, from the thread that received it, once nothing refers to the
        bytes of what :meth:`blpop_buffer` returned (they will be
        overwritten); anything else is ignored.  A fresh 1 MiB buffer per
        message cost its reader ~0.5 ms of page faults: the allocator maps
        new pages for it, which a kept buffer has already touched.  Buffers
        over :data:`RECEIVE_BUFFER_MAX` are not kept.
        """
        if type(body) is memoryview:
            buf = body.obj
            if type(buf) is bytearray and len(buf) <= RECEIVE_BUFFER_MAX:
                local = self._local
                kept = getattr(local, "rbuf", None)
                if kept is None or len(kept) < len(buf):
                    local.rbuf = buf

    def _blpop_command(self, key: Key, timeout: float) -> list[Any]:
        """``BLPOP key timeout`` packed, once per key and wait (a pipe end waits the same each time)."""
        cache = self._blpop_cmds
        packed = cache.get((key, timeout))
        if packed is None:
            if len(cache) >= 4096:
                cache.clear()  # objects come and go: bounded
            packed = cache[key, timeout] = _LeanPacker().pack("BLPOP", key, timeout)
        return packed

    def _blpop_buffer_once(self, key: Key, timeout: float) -> bytes | bytearray | memoryview | None:
        if self._owner._lost is not None:
            raise StateLostError(*self._owner._lost.args)
        conn = self._conn()
        try:
            self._write(conn, self._blpop_command(key, timeout))
            self._drain(conn)
            conn.note_wait()  # the raw reads below bypass read_response
            sock = conn._sock
            try:
                reader = getattr(conn._parser, "_reader", None)
                # TLS: the parser decrypts.  Else one read takes the reply's
                # start (all of a small one): the parser gets it fed, or a
                # large element goes on into its own buffer.
                if reader is None or reader.has_data() or type(sock) is not socket.socket:
                    head = b""
                    if reader is None or not reader.has_data():
                        # The parser's own read: bounded by the command's wait
                        # plus the read timeout, as _read does.
                        reply = conn.read_response(timeout=timeout + self._owner.read_timeout)
                        return None if reply is None else reply[1]  # type: ignore[no-any-return]
                else:
                    # The first read waits for the command's wait plus the read
                    # timeout: one poll and one read on the descriptor (a recv
                    # on the socket object would poll again, and changing its
                    # timeout costs two more system calls).
                    try:
                        head = _wait_read(sock, timeout + self._owner.read_timeout, conn._faasmp_spin_wait)
                    except TimeoutError:
                        raise
                    except BaseException as exc:
                        conn.disconnect()  # interrupted before the reply: the stream is out of step
                        if isinstance(exc, OSError):
                            raise redis.exceptions.ConnectionError(
                                f"Error while reading from socket: {exc}"
                            ) from exc
                        raise
                item = _whole_small_pop(head) if head else None
                if item is not None:
                    return item
                if not head or _small_reply(head):
                    if head and reader is not None:
                        reader.feed(head)
                    reply = conn.read_response()
                    return None if reply is None else reply[1]  # type: ignore[no-any-return]
                try:
                    return _read_pop_reply(sock, bytearray(head), self.take_buffer)
                except redis.exceptions.ResponseError:
                    raise
                except BaseException:
                    conn.disconnect()  # stopped inside a reply: the stream is out of step
                    raise
            except TimeoutError as exc:  # socket.timeout from a raw read: the server froze
                conn.disconnect()  # its reply may still come: the stream is out of step
                raise redis.exceptions.TimeoutError(f"Timeout reading from {self._owner._where}") from exc
        except redis.exceptions.ResponseError:
            raise
        except BaseException as exc:
            failed = self._failed(exc)
            if failed is exc:
                raise
            raise failed from exc

    def blmove_rotate(self, key: Key, timeout: float) -> bytes | None:
        """Wait until *key* has an element and return its last one, leaving it there."""
        for wait in self._waits(timeout):
            reply = self.execute("BLMOVE", key, key, "RIGHT", "RIGHT", wait)
            if reply is not None:
                return reply  # type: ignore[no-any-return]
        return None

    @staticmethod
    def _prefixes(sha: str) -> Callable[[Sequence[Key]], bytes]:
        """Packed ``EVALSHA sha numkeys keys...`` per key list, made once per object's keys.

        An object calls its scripts with the same keys every time: encoding
        them (and the sha) once saves ~3-6 us of CPU per call.  The cache is
        per script and bounded (cleared when full: objects come and go).
        """
        cache: dict[tuple[Key, ...], bytes] = {}
        head = _LeanPacker.prefix("EVALSHA", sha)

        def prefix(keys: Sequence[Key]) -> bytes:
            k = keys if type(keys) is tuple else tuple(keys)
            packed = cache.get(k)
            if packed is None:
                if len(cache) >= 4096:
                    cache.clear()
                packed = cache[k] = head + _LeanPacker.prefix(len(k), *k)
            return packed

        return prefix

    def script(self, source: str) -> ScriptCall:
        """A Lua script called with EVALSHA (loaded on first NOSCRIPT)."""
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        execute, execute_prefixed, loaded = self.execute, self._execute_prefixed, self._loaded
        prefix = self._prefixes(sha)

        def call(keys: Sequence[Key] = (), args: Sequence[Any] = ()) -> Any:
            try:
                reply = execute_prefixed(prefix(keys), 3 + len(keys), args)
            except redis.exceptions.NoScriptError:
                reply = execute("EVAL", source, len(keys), *keys, *args)
            loaded.add(sha)
            return reply

        return call

    def deferred_script(self, source: str, *, hold: bool = False, behind: bool = False) -> DeferredScriptCall:
        """A Lua script whose reply goes to ``on_reply`` later (see :meth:`send_deferred`).

        The first call in a process waits (and loads the script if needed);
        a server that later loses its scripts (restart) reports
        ``NoScriptError`` to ``on_reply``: that call did not run.  *hold*:
        the call is written with the thread's next command (``send_deferred``).
        *behind*: written at once, its reply read after any outstanding ones
        by the thread's next command (see :meth:`_send_deferred_prefixed`).
        An exception *on_reply* returns is raised by that command.
        """
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        sync = self.script(source)
        send, loaded = self._send_deferred_prefixed, self._loaded
        prefix = self._prefixes(sha)

        def call(keys: Sequence[Key], args: Sequence[Any], on_reply: Callable[[Any], object]) -> None:
            if sha in loaded:
                send(on_reply, prefix(keys), 3 + len(keys), args, hold, behind)
                return
            late = on_reply(sync(keys, args))
            if isinstance(late, BaseException):
                raise late

        return call

    def pop_then_script(
        self, key: Key, dest: Key, timeout: float, source: str, keys: Sequence[Key], args: Sequence[Any]
    ) -> Any:
        """Block up to *timeout* s (0 = forever) moving an element of *key* to *dest*, then run a script.

        Each wait is one write: ``BLMOVE key dest`` and the script, which Redis
        runs right after the move (it finds the element in *dest*, or
        nothing).  Returns the script's first reply other than 0, or 0 when
        *timeout* passed.  A blocked waiter thus acts on what it was handed
        in the same round trip (a lock's new owner records itself).
        """
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        for wait in self._waits(timeout):
            move = ("BLMOVE", key, dest, "LEFT", "RIGHT", wait)
            try:
                reply = self.execute_many([move, ("EVALSHA", sha, len(keys), *keys, *args)])[1]
            except redis.exceptions.NoScriptError:
                # The move ran; the script was not loaded yet: run it now (it loads).
                reply = self.script(source)(keys, args)
            if reply != 0:
                return reply
        return 0

    def execute_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send raw commands in one write and return their replies: one round trip.

        Large arguments are not copied and never pass through Lua (which
        costs ~2 ms per MB), so this is the path for big payloads.  If a reply
        is an error, all replies are still read, then the first error raises.
        """
        conn = self._send_commands(commands)
        replies: list[Any] = []
        error: Exception | None = None
        for command in commands:
            try:
                replies.append(self._read(conn, command))
            except redis.exceptions.ResponseError as exc:
                error = error or exc
                replies.append(exc)
            except _DROPPED as exc:
                raise _dropped(exc, self._owner._where) from exc
        if error is not None:
            raise error
        if self._local.error is not None:
            self._raise_late()
        return replies

    def execute_bulk(self, commands: Sequence[Sequence[Any]]) -> list[bytearray | None]:
        """Send commands that each reply with one string (GET, GETRANGE) and return their values.

        One round trip, like :meth:`execute_many`, but each value is received
        from the socket straight into its own ``bytearray`` (``recv_into``):
        hiredis would read a 20 MB value into a growing buffer of its own,
        then copy it into a bytes object, and callers that keep a mutable
        copy (shared memory) copy it once more.  None for a missing key; if a
        reply is an error, all replies are still read, then the first error
        raises.  Over TLS, or when the parser already holds bytes of these
        replies (read with a deferred reply), the parser reads them as usual.
        """
        values = self._execute_bulk(commands)
        if self._local.error is not None:
            self._raise_late()
        return values

    def _execute_bulk(self, commands: Sequence[Sequence[Any]]) -> list[bytearray | None]:
        if self._owner._lost is not None:
            raise StateLostError(*self._owner._lost.args)
        conn = self._conn()
        try:
            self._write(conn, conn.pack_commands(commands))
            # A deferred reply read now may bring the start of ours into the
            # parser's buffer: then the parser reads ours too (checked below).
            self._drain(conn)
            conn.note_wait()  # the raw reads below bypass read_response
            sock = conn._sock
            reader = getattr(conn._parser, "_reader", None)
            if reader is None or reader.has_data() or hasattr(sock, "getpeercert"):
                replies: list[Any] = []
                error: Exception | None = None
                for command in commands:
                    try:
                        replies.append(self._read(conn, command))
                    except redis.exceptions.ResponseError as exc:
                        error = error or exc
                        replies.append(None)
                if error is not None:
                    raise error
                return [None if r is None else bytearray(r) for r in replies]
            try:
                return _read_bulk_replies(sock, len(commands))
            except redis.exceptions.ResponseError:
                raise
            except TimeoutError as exc:  # socket.timeout from a raw read: the server froze
                conn.disconnect()  # its reply may still come: the stream is out of step
                raise redis.exceptions.TimeoutError(f"Timeout reading from {self._owner._where}") from exc
            except BaseException:
                conn.disconnect()  # stopped inside a reply: the stream is out of step
                raise
        except redis.exceptions.ResponseError:
            raise
        except BaseException as exc:
            failed = self._failed(exc)
            if failed is exc:
                raise
            raise failed from exc

    def close(self) -> None:
        """Close every thread's connection; the calling thread's deferred replies are read first.

        (A deferred release was written, so Redis runs it whether or not its
        reply is read; reading it here reports an error it turned out to be.)
        """
        try:
            self.flush()
        except Exception as exc:
            logger.warning("faasmp: a deferred command failed before the state was closed: %s", exc)
        finally:
            for conn in list(self._conns):
                conn.disconnect()
