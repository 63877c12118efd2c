"""State backend: where every shared object and message of a run lives.

This is the only module that imports ``redis``.  The rest of faasmp talks to
:class:`StateBackend`, a narrow protocol of the commands it needs, so another
implementation (a Redis Cluster client, valkey-glide, ...) can be registered
with :func:`register_state_backend` and the whole API suite run over it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import select
import socket
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import redis
import redis.exceptions

from ..runtime import metrics

logger = logging.getLogger(__name__)

Key = str | bytes


class StateError(RuntimeError):
    """The state backend (Redis) failed or could not be reached."""


class StateLostError(StateError):
    """Redis no longer holds this run's state (it restarted, was flushed or evicted keys).

    Raised by every later command of the run: shared objects, queued work and
    results are gone, so carrying on would return wrong (empty) data.
    """


class StatePermissionError(StateError, redis.exceptions.NoPermissionError):
    """The Redis user may not run a command faasmp needs, or touch a key of the run.

    A :class:`redis.exceptions.NoPermissionError` (a ResponseError) too, so
    code that handles Redis' own error still does; the message names the
    command Redis refused and the ACL faasmp needs.
    """


def _permission_error(exc: redis.exceptions.ResponseError) -> StatePermissionError:
    from .server import ACL_KEY_PATTERN  # noqa: PLC0415 - server imports nothing of ours

    return StatePermissionError(
        f"Redis refused a command of faasmp: {exc}.  The Redis user of FAASMP_REDIS_URL needs the "
        f"commands of faasmp.backends.server.ACL_COMMANDS on keys and channels {ACL_KEY_PATTERN!r}: "
        f"create it with faasmp.backends.server.acl_line() (the ACL line of docs/cloud.md)"
    )


class ScriptCall(Protocol):
    def __call__(self, keys: Sequence[Key] = ..., args: Sequence[Any] = ...) -> Any: ...


class StateOps(Protocol):
    """Commands available both directly and on a pipeline."""

    def rpush(self, key: Key, *values: Any) -> Any: ...
    def lpush(self, key: Key, *values: Any) -> Any: ...
    def lrange(self, key: Key, start: int, end: int) -> Any: ...
    def lindex(self, key: Key, index: int) -> Any: ...
    def llen(self, key: Key) -> Any: ...
    def delete(self, *keys: Key) -> Any: ...
    def exists(self, *keys: Key) -> Any: ...
    def expire(self, key: Key, seconds: int) -> Any: ...
    def pexpire(self, key: Key, millis: int) -> Any: ...
    def get(self, key: Key) -> Any: ...
    def getrange(self, key: Key, start: int, end: int) -> Any: ...
    def set(self, key: Key, value: Any, px: int | None = None, nx: bool = False) -> Any: ...
    def incrby(self, key: Key, amount: int = 1) -> Any: ...
    def hset(self, key: Key, mapping: dict[str, Any]) -> Any: ...
    def hget(self, key: Key, field: Key) -> Any: ...
    def hgetall(self, key: Key) -> Any: ...
    def hexists(self, key: Key, field: Any) -> Any: ...
    def hlen(self, key: Key) -> Any: ...
    def hincrby(self, key: Key, field: str, amount: int = 1) -> Any: ...
    def sadd(self, key: Key, *values: Any) -> Any: ...
    def srem(self, key: Key, *values: Any) -> Any: ...
    def smembers(self, key: Key) -> Any: ...
    def scard(self, key: Key) -> Any: ...
    def publish(self, channel: Key, message: Any) -> Any: ...


class StatePipeline(StateOps, Protocol):
    def execute(self) -> list[Any]: ...


class DeferredScriptCall(Protocol):
    def __call__(
        self, keys: Sequence[Key], args: Sequence[Any], on_reply: Callable[[Any], object]
    ) -> None: ...


class DirectOps(Protocol):
    """Hot-path commands on the calling thread's own connection (see :class:`_DirectRedis`)."""

    def execute(self, *args: Any) -> Any: ...
    def blpop(self, keys: Sequence[Key], timeout: float) -> tuple[bytes, bytes] | None: ...
    def blmove_rotate(self, key: Key, timeout: float) -> bytes | None: ...
    def blpop_buffer(self, key: Key, timeout: float) -> bytes | bytearray | None: ...
    def script(self, source: str) -> ScriptCall: ...
    def deferred_script(
        self, source: str, *, hold: bool = False, behind: bool = False
    ) -> DeferredScriptCall: ...
    def send_many_deferred(
        self, on_reply: Callable[[Any], None], commands: Sequence[Sequence[Any]]
    ) -> None: ...
    def execute_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]: ...
    def execute_bulk(self, commands: Sequence[Sequence[Any]]) -> list[bytearray | None]: ...
    def pop_then_script(
        self, key: Key, dest: Key, timeout: float, source: str, keys: Sequence[Key], args: Sequence[Any]
    ) -> Any: ...
    def flush(self) -> None: ...
    def pending(self) -> bool: ...


class StateBackend(StateOps, Protocol):
    """What faasmp needs from a shared-state store."""

    url: str
    #: Lowest-overhead path for latency-critical commands (pipes, queues).
    direct: DirectOps

    def ping(self) -> float: ...
    def time(self) -> float: ...
    def blpop(self, keys: Sequence[Key], timeout: float) -> tuple[bytes, bytes] | None: ...
    def lpop_many(self, key: Key, count: int) -> list[bytes]: ...
    def blmove_rotate(self, key: Key, timeout: float) -> bytes | None: ...
    def pipeline(self, transaction: bool = False) -> StatePipeline: ...
    def script(self, source: str) -> ScriptCall: ...
    def scan_keys(self, pattern: str) -> Iterator[bytes]: ...
    def subscribe(self, *channels: Key) -> Subscription: ...
    def statistics(self) -> StateStatistics: ...
    def watch_epoch(self, key: Key) -> None: ...
    def mark_lost(self, reason: str) -> None: ...
    def close(self) -> None: ...


class Subscription(Protocol):
    def get_message(self, timeout: float) -> Any: ...
    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class StateStatistics:
    """What this process has asked of its state backend so far (see :meth:`RedisState.statistics`)."""

    #: Requests written to Redis: one per command, pipeline or batch sent in one
    #: write.  Each costs at most one network round trip (a deferred send costs
    #: none of its own: its reply is read with the next request).  Connection
    #: setup (AUTH, HELLO, CLIENT SETNAME) counts too.
    round_trips: int
    #: Waits for a reply: writes after which this process read at least one
    #: reply before its next write on that connection.  A request whose reply
    #: is read with the next one (a deferred send, a lock release that cannot
    #: fail) is written but not waited for: the latency users see is the waits.
    waits: int = 0


class _WriteCounter:
    """A count shared by the connections of one :class:`RedisState` (an int under the GIL)."""

    __slots__ = ("waits", "writes")

    def __init__(self) -> None:
        self.writes = 0
        self.waits = 0


def _no_setinfo_options() -> dict[str, Any]:
    """Connection options that skip CLIENT SETINFO on connect, for this redis-py.

    One command less on every new connection (each worker thread opens its
    own).  redis-py 8 takes ``driver_info=None``; earlier versions
    ``lib_name=None, lib_version=None`` (deprecated in 8).
    """
    import inspect  # noqa: PLC0415

    params = inspect.signature(redis.connection.AbstractConnection.__init__).parameters
    if "driver_info" in params:
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}


_NO_SETINFO = _no_setinfo_options()


def _counting_connection_class(
    url: str, counter: _WriteCounter, ready: Callable[[], None] | None = None
) -> type:
    """The redis-py connection class *url* needs, counting every request it writes.

    A subclass (a wrapper around ``send_packed_command``, through which every
    command, pipeline and packed batch is written), so redis-py itself is
    left as it is; the pool and :class:`_DirectRedis` both make their
    connections from it.  *ready*, if given, is called before each new
    connection is opened (see :class:`RedisState`).
    """
    scheme = url.split("://", 1)[0]
    base: type = {
        "unix": redis.UnixDomainSocketConnection,
        "rediss": redis.SSLConnection,
    }.get(scheme, redis.Connection)

    class CountingConnection(base):  # type: ignore[valid-type,misc]
        def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
            # Every connect (pooled, direct, a reconnect) comes through here.
            if ready is not None and not self._sock:
                ready()
            super().connect_check_health(*args, **kwargs)

        _unread = False  # written since the last read: the next read is a wait

        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            counter.writes += 1
            self._unread = True
            super().send_packed_command(command, check_health)

        def note_wait(self) -> None:
            """Count a wait for a reply (also called by the raw socket reads in _DirectRedis)."""
            if self._unread:
                self._unread = False
                counter.waits += 1

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            # Every reply (direct, pooled, pipelined, a script's) comes through
            # here: an ACL refusal becomes an error that says what to fix.  A
            # refusal inside a Lua script arrives as a plain ResponseError.
            if self._unread:
                self._unread = False
                counter.waits += 1
            try:
                return super().read_response(*args, **kwargs)
            except redis.exceptions.ResponseError as exc:
                text = str(exc)
                if isinstance(exc, redis.exceptions.NoPermissionError) or "no permissions" in text.lower():
                    if not isinstance(exc, StatePermissionError):
                        raise _permission_error(exc) from exc
                raise

    CountingConnection.__name__ = CountingConnection.__qualname__ = f"Counting{base.__name__}"
    return CountingConnection


def _translate(exc: Exception) -> StateError:
    return StateError(f"Redis operation failed: {exc}")


#: What redis-py raises when the server goes away (translated to StateError).
_DROPPED = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


#: Seconds a call waits for a byte of Redis' reply before it gives up on the
#: server (a frozen one: SIGSTOP, a partition that silently drops packets) and
#: raises StateError.  Without it such a call waited for TCP keepalive, or
#: forever on a unix socket.  A blocking command (BLPOP, BLMOVE) adds its own
#: wait to it, and waits longer than this are split into waits of this length
#: so that no read is ever unbounded.  Ample for a live server: the slowest
#: replies here take well under a second (a Lua script over a large hash;
#: Redis itself complains about scripts after 5 s), and a large value arrives
#: in a stream of bytes, which resets the clock.
READ_TIMEOUT = 10.0

#: Blocking commands and the position of their own timeout argument.
#: At most this many deferred replies left unread behind each other on one
#: connection (releases in a row with no other command): the next one waits.
_MAX_BEHIND = 64

_BLOCKING = {"BLPOP": -1, "BRPOP": -1, "BLMOVE": -1, "BRPOPLPUSH": -1, "BLMPOP": 1}


def _dropped(exc: BaseException, where: str) -> StateError:
    """The error every faasmp call raises when its Redis connection fails."""
    return StateError(
        f"lost the connection to Redis at {where} ({type(exc).__name__}: {exc}); if the server "
        "stopped or restarted, this run's shared state is gone (see docs/reliability.md)"
    )


class RedisState:
    """:class:`StateBackend` over redis-py (works with Redis and Valkey)."""

    def __init__(
        self,
        url: str,
        *,
        client_name: str = "faasmp",
        read_timeout: float = READ_TIMEOUT,
        ready: Callable[[], None] | None = None,
    ) -> None:
        """Open (lazily: no connection is made here) the Redis at *url*.

        *ready*, if given, is called before each new connection is opened and
        may block or raise: a server still starting makes its first users wait
        for it (or raise why it never will) instead of the code that started it.
        """
        # A URL's ?socket_timeout= (redis-py's own option) sets the read timeout
        # for every process of the run: workers open the same URL.
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        given: Any = query["socket_timeout"][-1] if "socket_timeout" in query else read_timeout
        try:
            read_timeout = float(given)
        except ValueError:
            read_timeout = -1.0
        if not read_timeout > 0:
            raise ValueError(f"Redis socket_timeout must be a positive number of seconds, got {given!r}")
        self.url = url
        self.read_timeout = read_timeout
        # socket_timeout bounds every read (see READ_TIMEOUT).  Blocking
        # commands (BLPOP/BLMOVE waits of a Queue.get, Lock.acquire, join...)
        # go through the direct path, which gives each read its command's own
        # wait plus this, and splits long waits.
        opts: dict[str, Any] = {
            "socket_connect_timeout": 5,
            "socket_timeout": read_timeout,
            "client_name": client_name,
            # Every new connection (also a reconnect after a restart) checks
            # that the server still holds the run's state; see watch_epoch.
            "redis_connect_func": self._on_connect,
            **_NO_SETINFO,
        }
        if not url.startswith("unix://"):
            opts["socket_keepalive"] = True
        from ..config import redact_url

        self._where = redact_url(url)
        self._epoch: Key | None = None
        self._lost: StateLostError | None = None
        self._writes = _WriteCounter()
        opts["connection_class"] = _counting_connection_class(url, self._writes, ready)
        self._r = redis.Redis.from_url(url, **opts)
        self.direct = _DirectRedis(self._r, self)
        # Pooled commands first collect this thread's deferred direct reply, so
        # a thread's commands run in program order whichever path they take.
        direct_flush, pooled_execute = self.direct.flush, self._r.execute_command
        where = self._where
        # One command in metrics.SAMPLE_EVERY is timed: Redis latency as the
        # program's real operations see it (faasmp.stats.redis_latency).
        sampler = self.sampler = metrics.REGISTRY.sampler()

        def execute_command(*args: Any, **options: Any) -> Any:
            if self._lost is not None:
                raise StateLostError(*self._lost.args)
            direct_flush()
            try:
                if sampler.due():
                    return sampler.timed(args[0] if args else "?", pooled_execute, args, options)
                return pooled_execute(*args, **options)
            except _DROPPED as exc:
                raise _dropped(exc, where) from exc

        self._r.execute_command = execute_command  # type: ignore[method-assign]
        # Bind the hot commands once: attribute lookups add up at 10k ops/s.
        r = self._r
        self.rpush = r.rpush
        self.lpush = r.lpush
        self.lrange = r.lrange
        self.lindex = r.lindex
        self.llen = r.llen
        self.delete = r.delete
        self.exists = r.exists
        self.expire = r.expire
        self.pexpire = r.pexpire
        self.get = r.get
        self.getrange = r.getrange
        self.incrby = r.incrby
        self.hget = r.hget
        self.hgetall = r.hgetall
        self.hexists = r.hexists
        self.hlen = r.hlen
        self.hincrby = r.hincrby
        self.sadd = r.sadd
        self.srem = r.srem
        self.smembers = r.smembers
        self.scard = r.scard
        self.publish = r.publish

    def __repr__(self) -> str:
        from ..config import redact_url

        return f"<RedisState {redact_url(self.url)}>"

    def statistics(self) -> StateStatistics:
        """Counts of what this process has sent to Redis (a snapshot; see :class:`StateStatistics`)."""
        return StateStatistics(round_trips=self._writes.writes, waits=self._writes.waits)

    def __getstate__(self) -> None:
        raise TypeError("a StateBackend holds live connections and cannot be pickled")

    # -- run epoch: detect a server that lost the run's state -----------------
    def watch_epoch(self, key: Key) -> None:
        """From now on, every new connection checks that *key* exists.

        The client sets *key* when the run starts (and renews it); a server
        that restarted without persistence, was flushed or evicted it no
        longer has it, and then every command raises :class:`StateLostError`
        instead of silently working on an empty keyspace.
        """
        self._epoch = key

    def mark_lost(self, reason: str) -> None:
        """Make every later command raise :class:`StateLostError` with *reason*."""
        if self._lost is None:
            self._lost = StateLostError(
                f"Redis at {self._where} no longer holds this faasmp run's state ({reason}): "
                "its shared objects, queued work and results are lost. Shut the run down "
                "(faasmp.shutdown() or ctx.shutdown()) and start again."
            )

    def _on_connect(self, conn: Any) -> None:
        conn.on_connect()
        if self._lost is None and self._epoch is not None:
            conn.send_command("EXISTS", self._epoch, check_health=False)
            if conn.read_response():
                return
            self.mark_lost("the server restarted, was flushed or evicted keys")
        if self._lost is not None:
            conn.disconnect()
            raise StateLostError(*self._lost.args)

    def set(self, key: Key, value: Any, px: int | None = None, nx: bool = False) -> Any:
        return self._r.set(key, value, px=px, nx=nx)

    def hset(self, key: Key, mapping: dict[str, Any]) -> Any:
        return self._r.hset(key, mapping=mapping)  # type: ignore[arg-type]

    def ping(self) -> float:
        """Round-trip time of one PING in seconds."""
        t0 = time.perf_counter()
        try:
            self._r.ping()
        except redis.exceptions.RedisError as exc:
            raise _translate(exc) from exc
        return time.perf_counter() - t0

    def time(self) -> float:
        sec, usec = self._r.time()
        return sec + usec / 1e6

    def lpop_many(self, key: Key, count: int) -> list[bytes]:
        """Pop up to *count* elements at once (empty list if none)."""
        return self._r.lpop(key, count) or []  # type: ignore[return-value]

    def blpop(self, keys: Sequence[Key], timeout: float) -> tuple[bytes, bytes] | None:
        """Pop from the first non-empty list, waiting up to *timeout* (0 = forever).

        On this thread's direct connection, whose reads carry the command's own
        wait (the pooled client's reads are cut after ``read_timeout``).
        """
        return self.direct.blpop(keys, timeout)

    def blmove_rotate(self, key: Key, timeout: float) -> bytes | None:
        """Wait until *key* has an element and return its last one, leaving it there."""
        return self.direct.blmove_rotate(key, timeout)

    def pipeline(self, transaction: bool = False) -> StatePipeline:
        return _RedisPipeline(self._r.pipeline(transaction=transaction), self.direct.flush, self)

    def script(self, source: str) -> ScriptCall:
        return self._r.register_script(source)  # type: ignore[return-value]

    def scan_keys(self, pattern: str) -> Iterator[bytes]:
        return self._r.scan_iter(match=pattern, count=1000)  # type: ignore[return-value]

    def subscribe(self, *channels: Key) -> Subscription:
        ps = self._r.pubsub(ignore_subscribe_messages=True)
        ps.subscribe(*channels)
        return ps  # type: ignore[return-value]

    def close(self) -> None:
        self._r.close()
        self._r.connection_pool.disconnect()
        self.direct.close()


class Parts(tuple):  # type: ignore[type-arg]
    """One command argument written from several buffers, none of them copied.

    ``Parts((mac, body))`` is sent as the single bulk string ``mac + body``:
    a signed 1 MiB message goes out without being joined into a new buffer
    (for ``StateBackend.direct``'s ``execute_many`` and ``send_many_deferred``).
    """

    __slots__ = ()

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in self)


def signed_parts(mac: Any, body: Any) -> Parts:
    """``Parts`` of ``mac || body``, where *body* is a bytes-like object or a tuple of them."""
    return Parts((mac, *body)) if type(body) is tuple else Parts((mac, body))


class _LeanPacker:
    """RESP encoding for the direct path: ~1 us per small command, large arguments not copied.

    redis-py's packers cost ~13 us per small command here (generic type
    checks, encoder objects), and hiredis' one copies every argument into
    one buffer at ~2.5-7 ms per MB.  This one joins the small parts into one
    chunk (one ``sendall``) and hands arguments over 64 KiB on as they are.
    """

    _BIG = 1 << 16

    def pack(self, *args: Any) -> list[Any]:
        return self.pack_prefixed(b"", 0, args)

    def pack_prefixed(self, prefix: bytes, n_prefix: int, args: Sequence[Any]) -> list[Any]:
        """RESP of a command whose first *n_prefix* arguments are packed already, as *prefix*.

        A script call's EVALSHA, sha, key count and keys are the same on every
        call of one object: packed once (:meth:`_DirectRedis.script`), they
        cost nothing per call.  Small str/int/bytes arguments take a fast path
        (one formatting per argument: ~4 instead of ~7 us for a lock's script).
        """
        parts = [b"*%d\r\n" % (n_prefix + len(args)), prefix]
        for a in args:
            t = type(a)
            if t is str:
                a = a.encode()
            elif t is int:
                a = b"%d" % a
            elif t is float:
                a = repr(a).encode()
            elif t is not bytes or len(a) > self._BIG:
                break
            parts.append(b"$%d\r\n%b\r\n" % (len(a), a))
        else:
            return [b"".join(parts)]
        return self._pack_general(prefix, n_prefix, args)

    @staticmethod
    def prefix(*args: str | bytes | int) -> bytes:
        """The arguments packed for :meth:`pack_prefixed` (no array header)."""
        parts = []
        for a in args:
            b = a.encode() if isinstance(a, str) else b"%d" % a if isinstance(a, int) else a
            parts.append(b"$%d\r\n%b\r\n" % (len(b), b))
        return b"".join(parts)

    def _pack_general(self, prefix: bytes, n_prefix: int, args: Sequence[Any]) -> list[Any]:
        """Any argument type; arguments over 64 KiB (and ``Parts``) are handed on uncopied."""
        out: list[Any] = []
        buf = [b"*%d\r\n" % (n_prefix + len(args)), prefix]
        big = self._BIG
        for a in args:
            if isinstance(a, Parts):
                buf.append(b"$%d\r\n" % a.nbytes)
                out.append(b"".join(buf))
                out.extend(a)
                buf = [b"\r\n"]
                continue
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, bool) or not isinstance(a, (bytes, bytearray, memoryview, int, float)):
                raise redis.exceptions.DataError(
                    f"invalid input of type {type(a).__name__!r}: send bytes, str, int or float"
                )
            elif isinstance(a, int):
                a = b"%d" % a
            elif isinstance(a, float):
                a = repr(a).encode()
            n = a.nbytes if isinstance(a, memoryview) else len(a)
            if n > big:
                buf.append(b"$%d\r\n" % n)
                out.append(b"".join(buf))
                out.append(a)
                buf = [b"\r\n"]
            else:
                buf.append(b"$%d\r\n" % n)
                buf.append(a)
                buf.append(b"\r\n")
        out.append(b"".join(buf))
        return out


#: Popped elements at most this large are read by the parser (in C): reading
#: the reply in Python costs a few microseconds that only large ones repay.
_SMALL_REPLY = 1 << 16
#: The first read of a BLPOP reply: a small message's whole reply, in one recv.
_FIRST_READ = 1 << 13


def _pop_element(head: bytes) -> tuple[int, int] | None:
    """Start and length of the element in a BLPOP reply whose first bytes are *head*.

    *head* starts with the reply's array header (``*2\\r\\n$``); None when it
    does not reach the element's length yet.
    """
    end = head.find(b"\r\n", 4)
    if end < 0:
        return None
    start = end + 2 + int(head[5:end]) + 2  # past the key and its CRLF
    end = head.find(b"\r\n", start)
    if end < 0 or head[start : start + 1] != b"$":
        return None
    return end + 2, int(head[start + 1 : end])


def _small_reply(head: bytes) -> bool:
    """Whether the reply starting with *head* is not a large BLPOP element (the parser reads it).

    The array header, the key and the element's length arrive in one write.
    """
    if not head.startswith(b"*2\r\n$"):
        return True  # a timeout, an error or no data (closed): the parser handles it
    element = _pop_element(head)
    return element is not None and element[1] <= _SMALL_REPLY


def _whole_small_pop(head: bytes) -> bytes | None:
    """The element of a BLPOP reply when *head* is exactly that whole reply, else None (the parser reads it).

    A small message's reply comes in one read: taking the element out here
    skips feeding the parser and redis-py's reply layers (~3 us per recv).
    """
    element = _pop_element(head) if head.startswith(b"*2\r\n$") else None
    if element is None:
        return None
    at, n = element
    if len(head) != at + n + 2 or n > _SMALL_REPLY:
        return None
    return head[at : at + n]


class _RespReader:
    """RESP replies read from a socket, each string value straight into its own buffer.

    Lines (headers) are parsed from a buffer of received bytes; a value's
    bytes go from that buffer and then ``recv_into`` its own preallocated
    ``bytearray`` (no copy through the parser), followed by exactly the bytes
    of its CRLF still missing.
    """

    def __init__(self, sock: Any, head: bytearray | None = None) -> None:
        self.sock = sock
        self.head = bytearray() if head is None else head
        self.pos = 0

    def more(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        self.head.extend(chunk)

    def line(self) -> bytes:
        """The next header line, without its CRLF."""
        while True:
            end = self.head.find(b"\r\n", self.pos)
            if end >= 0:
                out = bytes(self.head[self.pos : end])
                self.pos = end + 2
                return out
            self.more()

    def skip(self, n: int) -> None:
        """Pass over a value of *n* bytes and its CRLF."""
        while len(self.head) < self.pos + n + 2:
            self.more()
        self.pos += n + 2

    def value(self, n: int) -> bytearray:
        """The next *n*-byte string value (its header already read), received into a buffer of its own."""
        out = bytearray(n)
        view = memoryview(out)
        head = self.head
        have = min(len(head) - self.pos, n)
        view[:have] = head[self.pos : self.pos + have]
        self.pos += have
        while have < n:
            got = self.sock.recv_into(view[have:])
            if not got:
                raise redis.exceptions.ConnectionError("Connection closed by server.")
            have += got
        while len(head) < self.pos + 2:
            chunk = self.sock.recv(self.pos + 2 - len(head))
            if not chunk:
                raise redis.exceptions.ConnectionError("Connection closed by server.")
            head.extend(chunk)
        if head[self.pos : self.pos + 2] != b"\r\n":
            raise redis.exceptions.InvalidResponse("a string reply without its CRLF")
        # The bytes before the value are done with: drop them, so that a long
        # run of small replies does not keep re-scanning them.
        del head[: self.pos + 2]
        self.pos = 0
        return out

    def leftover(self) -> bool:
        """Whether bytes past the replies read so far were received."""
        return len(self.head) > self.pos


def _read_pop_reply(sock: Any, head: bytearray) -> bytearray | None:
    """Read a ``BLPOP key ...`` reply from *sock*, whose first bytes are *head*: the element, or None.

    The element is received straight into one preallocated buffer (its
    first bytes arrive with the header).  RESP2 or RESP3; a Redis error
    raises :class:`redis.exceptions.ResponseError`.  None on timeout.
    """
    reader = _RespReader(sock, head)
    first = reader.line()
    if first in (b"_", b"*-1"):
        return None
    if first[:1] == b"-":
        raise redis.exceptions.ResponseError(first[1:].decode(errors="replace"))
    if first != b"*2":
        raise redis.exceptions.InvalidResponse(f"unexpected reply to BLPOP: {first[:40]!r}")
    header = reader.line()  # the key's length
    if header[:1] != b"$":
        raise redis.exceptions.InvalidResponse(f"unexpected reply to BLPOP: {header[:40]!r}")
    reader.skip(int(header[1:]))
    header = reader.line()  # the element's length
    if header[:1] != b"$":
        raise redis.exceptions.InvalidResponse(f"unexpected reply to BLPOP: {header[:40]!r}")
    out = reader.value(int(header[1:]))
    if reader.leftover():
        raise redis.exceptions.InvalidResponse("data after the reply to BLPOP")
    return out


def _read_bulk_replies(sock: Any, count: int) -> list[bytearray | None]:
    """Read *count* bulk-string replies from *sock*, each value straight into its own buffer.

    RESP2 or RESP3.  A null reply is None; after reading them all, the first
    error reply raises :class:`redis.exceptions.ResponseError`.
    """
    reader = _RespReader(sock)
    out: list[bytearray | None] = []
    error: redis.exceptions.ResponseError | None = None
    for _ in range(count):
        header = reader.line()
        if header in (b"_", b"$-1"):
            out.append(None)
            continue
        if header[:1] == b"-":
            error = error or redis.exceptions.ResponseError(header[1:].decode(errors="replace"))
            out.append(None)
            continue
        if header[:1] != b"$":
            raise redis.exceptions.InvalidResponse(f"unexpected reply to a string read: {header[:40]!r}")
        out.append(reader.value(int(header[1:])))
    if reader.leftover():
        raise redis.exceptions.InvalidResponse("data after the replies to a string read")
    if error is not None:
        raise error
    return out


def _ignore_reply(reply: Any) -> None:
    """The callback of a deferred command whose reply nobody needs."""


def _forget_connections(ref: weakref.ref[_DirectRedis]) -> None:
    """After a fork, in the child: the parent's per-thread connections are not this process's."""
    direct = ref()
    if direct is not None:
        direct._local = threading.local()


def _write_raw(conn: Any, sock: socket.socket, data: bytes) -> None:
    """Write *data* on a plain (non-TLS) socket: one ``write`` system call in the usual case.

    ``sock.sendall`` on a socket with a timeout polls before each send (two
    system calls); the socket is non-blocking underneath, so a direct write
    either takes the bytes at once or says how many it took, and only the
    rest waits in ``sendall``.  Errors drop the connection, as redis-py does.
    """
    try:
        try:
            sent = os.write(sock.fileno(), data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            sock.sendall(memoryview(data)[sent:])
    except TimeoutError as exc:
        conn.disconnect()
        raise redis.exceptions.TimeoutError("Timeout writing to socket") from exc
    except OSError as exc:
        conn.disconnect()
        raise redis.exceptions.ConnectionError(f"Error while writing to socket: {exc}") from exc


#: Drains that go straight to the parser after a non-blocking read found nothing.
_READ_FIRST_SKIP = 64


def _take_ready_bytes(conn: Any) -> None:
    """Hand the parser the reply bytes already received, without the poll its own read makes first.

    A deferred reply read long after its command (the next recv of an
    echoing process) has arrived: one non-blocking ``read`` fetches it (a
    recv on the socket object would poll first).  Nothing there (or TLS, or
    another parser): the parser reads as usual.  A reply read right after
    its command (a send then a recv) is usually not there yet: after a miss
    the next ``_READ_FIRST_SKIP`` drains of this connection do not try, so
    that the miss does not cost a third system call every time.
    """
    sock = conn._sock
    reader = getattr(conn._parser, "_reader", None)
    if reader is None or type(sock) is not socket.socket or reader.has_data():
        return
    skip = getattr(conn, "_faasmp_skip_reads", 0)
    if skip:
        conn._faasmp_skip_reads = skip - 1
        return
    try:
        data = os.read(sock.fileno(), _FIRST_READ)
    except BlockingIOError:
        conn._faasmp_skip_reads = _READ_FIRST_SKIP
        return
    except OSError as exc:
        conn.disconnect()
        raise redis.exceptions.ConnectionError(f"Error while reading from socket: {exc}") from exc
    if not data:
        conn.disconnect()
        raise redis.exceptions.ConnectionError("Connection closed by server.")
    reader.feed(data)


def _wait_read(sock: socket.socket, timeout: float) -> bytes:
    """Up to ``_FIRST_READ`` bytes from *sock*, waiting up to *timeout* s for the first (TimeoutError)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    deadline = time.monotonic() + timeout
    left = timeout
    while True:
        if poller.poll(left * 1000):
            try:
                return os.read(sock.fileno(), _FIRST_READ)
            except BlockingIOError:
                pass  # a spurious wake-up: wait again
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply within the wait")


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
    """

    def __init__(self, client: redis.Redis, owner: RedisState) -> None:
        self._owner = owner
        self._pool = client.connection_pool
        self._local = threading.local()
        self._conns: weakref.WeakSet[Any] = weakref.WeakSet()
        self._loaded: set[str] = set()
        self._writes = owner._writes
        self._blpop_cmds: dict[tuple[Key, float], list[Any]] = {}
        # A forked child must not use its parent's connections: it forgets
        # them at the fork instead of comparing os.getpid() on every command
        # (a system call: 2 of the ~12 a pipe round trip made per side).
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_connections(ref))

    def _conn(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None:
            pool = self._pool
            conn = pool.connection_class(**pool.connection_kwargs)
            conn._command_packer = _LeanPacker()
            local.conn, local.pending = conn, []
            local.held = local.error = None
            self._conns.add(conn)
        return conn

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
        pending = local.pending
        if not pending:
            return
        local.pending = []  # first: a flush from a GC finalizer must not read them twice
        _take_ready_bytes(conn)
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
                local.pending = []
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
        pending, local.pending = getattr(local, "pending", None) or [], []
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
            return conn.read_response()  # bounded by the connection's socket_timeout
        wait = float(args[position])
        # wait 0 is "forever" to Redis: the typed methods never send it (they
        # split long waits); a raw one keeps its meaning and is not bounded.
        return conn.read_response(timeout=wait + self._owner.read_timeout if wait > 0 else None)

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

    def _send_read(self, conn: Any, *args: Any) -> Any:
        self._write(conn, conn.pack_command(*args))
        self._drain(conn)
        return self._read(conn, args)

    def _execute_prefixed(self, prefix: bytes, n_prefix: int, args: Sequence[Any]) -> Any:
        """:meth:`execute` of a non-blocking command whose first *n_prefix* arguments are *prefix*."""
        if self._owner._lost is not None:
            raise StateLostError(*self._owner._lost.args)
        conn = self._conn()
        try:
            packed = conn._command_packer.pack_prefixed(prefix, n_prefix, args)
            if self._owner.sampler.due():
                reply = self._owner.sampler.timed("EVALSHA", self._send_read_packed, (conn, packed), {})
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
        return conn.read_response()  # not a blocking command: bounded by socket_timeout

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

    def blpop_buffer(self, key: Key, timeout: float) -> bytes | bytearray | None:
        """Pop from *key*, waiting up to *timeout* (0 = forever); the element is read into one buffer.

        hiredis reads a reply into its own 32 KiB buffer, then copies it into
        a bytes object: most of the CPU a 1 MiB message costs its reader.
        Here an element over 64 KiB goes from the socket straight into a
        preallocated ``bytearray`` (``recv_into``).  Smaller ones, and any
        reply when the parser already holds bytes of it (they came with a
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

    def _blpop_command(self, key: Key, timeout: float) -> list[Any]:
        """``BLPOP key timeout`` packed, once per key and wait (a pipe end waits the same each time)."""
        cache = self._blpop_cmds
        packed = cache.get((key, timeout))
        if packed is None:
            if len(cache) >= 4096:
                cache.clear()  # objects come and go: bounded
            packed = cache[key, timeout] = _LeanPacker().pack("BLPOP", key, timeout)
        return packed

    def _blpop_buffer_once(self, key: Key, timeout: float) -> bytes | bytearray | None:
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
                        head = _wait_read(sock, timeout + self._owner.read_timeout)
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
                    return _read_pop_reply(sock, bytearray(head))
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


class _RedisPipeline:
    """A redis-py pipeline with :class:`StateOps`' signatures."""

    def __init__(
        self, pipe: Any, before_execute: Callable[[], None] = lambda: None, owner: RedisState | None = None
    ) -> None:
        self._p = pipe
        self._before_execute = before_execute
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._p, name)

    def __len__(self) -> int:
        return len(self._p)

    def hset(self, key: Key, mapping: dict[str, Any]) -> Any:
        return self._p.hset(key, mapping=mapping)

    def set(self, key: Key, value: Any, px: int | None = None, nx: bool = False) -> Any:
        return self._p.set(key, value, px=px, nx=nx)

    def execute(self) -> list[Any]:
        owner = self._owner
        if owner is not None and owner._lost is not None:
            raise StateLostError(*owner._lost.args)
        self._before_execute()
        try:
            return self._p.execute()  # type: ignore[no-any-return]
        except _DROPPED as exc:
            raise _dropped(exc, owner._where if owner else "?") from exc


#: Exceptions a caller may see when Redis goes away.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    StateError,
    ValueError,  # redis-py: "I/O operation on closed file" after close()
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    OSError,
)

StateFactory = Callable[..., StateBackend]
_STATE_BACKENDS: dict[str, StateFactory] = {}


def register_state_backend(scheme: str, factory: StateFactory) -> None:
    """Register *factory* (called as ``factory(url, client_name=..., ready=...)``) for ``scheme://`` URLs."""
    _STATE_BACKENDS[scheme] = factory


def open_state(
    url: str, client_name: str = "faasmp", ready: Callable[[], None] | None = None
) -> StateBackend:
    """Open a state backend for *url*; unknown schemes list the known ones.

    *ready* is called before each new connection (see :class:`RedisState`).
    """
    scheme = url.split("://", 1)[0]
    factory = _STATE_BACKENDS.get(scheme)
    if factory is None:
        raise ValueError(f"no state backend for URL scheme {scheme!r}; known: {sorted(_STATE_BACKENDS)}")
    return factory(url, client_name=client_name, ready=ready)


for _scheme in ("redis", "rediss", "unix"):
    register_state_backend(_scheme, RedisState)  # type: ignore[arg-type]
