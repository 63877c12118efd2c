"""State backend: where every shared object and message of a run lives.

This module, :mod:`~faasmp.backends.direct` (the per-thread hot path),
:mod:`~faasmp.backends.resp` (its wire) and :mod:`~faasmp.backends.wire`
(faasmp's own connection) are the only modules that speak to Redis.  Two
implementations: :class:`RedisState` (the client's) runs its commands on
redis-py's client; :class:`DirectState` (a worker's) runs every command on
the direct path over :class:`~faasmp.backends.wire.RespConnection` and
imports redis-py only for what that path lacks (pub/sub, SCAN).  Both raise
redis-py's exception types (:mod:`~faasmp.backends.errors`).

The rest of faasmp talks to :class:`StateBackend`, a narrow protocol of the
commands it needs, so another
implementation (a Redis Cluster client, valkey-glide, ...) can be registered
with :func:`register_state_backend` and the whole API suite run over it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..runtime import metrics
from .errors import exceptions
from .resp import _LeanPacker

if TYPE_CHECKING:
    from .wire import Endpoint, RespConnection

logger = logging.getLogger(__name__)

Key = str | bytes


class StateError(RuntimeError):
    """The state backend (Redis) failed or could not be reached."""


class StateLostError(StateError):
    """Redis no longer holds this run's state (it restarted, was flushed or evicted keys).

    Raised by every later command of the run: shared objects, queued work and
    results are gone, so carrying on would return wrong (empty) data.
    """


class StatePermissionError(StateError, exceptions.NoPermissionError):
    """The Redis user may not run a command faasmp needs, or touch a key of the run.

    A :class:`exceptions.NoPermissionError` (a ResponseError) too, so
    code that handles Redis' own error still does; the message names the
    command Redis refused and the ACL faasmp needs.
    """


def _permission_error(exc: exceptions.ResponseError) -> StatePermissionError:
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
    def command(self, *fixed: Key | int) -> Callable[..., Any]: ...
    def blpop(self, keys: Sequence[Key], timeout: float) -> tuple[bytes, bytes] | None: ...
    def blmove_rotate(self, key: Key, timeout: float) -> bytes | None: ...
    def blpop_buffer(self, key: Key, timeout: float) -> bytes | bytearray | memoryview | None: ...
    def take_buffer(self, n: int) -> memoryview: ...
    def recycle(self, body: object) -> None: ...
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


def _import_redis() -> Any:
    """redis-py's package, imported on first use (a worker's cold path never needs it)."""
    import redis  # noqa: PLC0415 - ~50 ms: only where redis-py's client is used

    return redis


@functools.cache
def _no_setinfo_options() -> dict[str, Any]:
    """Connection options that skip CLIENT SETINFO on connect, for this redis-py.

    One command less on every new connection (each worker thread opens its
    own).  redis-py 8 takes ``driver_info=None``; earlier versions
    ``lib_name=None, lib_version=None`` (deprecated in 8).
    """
    import inspect  # noqa: PLC0415

    redis = _import_redis()
    params = inspect.signature(redis.connection.AbstractConnection.__init__).parameters
    if "driver_info" in params:
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}


class _PooledPacker(_LeanPacker):
    """The lean packer for redis-py's own calls, whose command name may hold several words."""

    def pack(self, *args: Any) -> list[Any]:
        # As redis-py's packers: "SCRIPT LOAD", "CONFIG GET" are sent as two arguments.
        first = args[0]
        if isinstance(first, str):
            if " " in first:
                args = (*first.split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        return self.pack_prefixed(b"", 0, args)


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
    redis = _import_redis()
    scheme = url.split("://", 1)[0]
    base: type = {
        "unix": redis.UnixDomainSocketConnection,
        "rediss": redis.SSLConnection,
    }.get(scheme, redis.Connection)

    class CountingConnection(base):  # type: ignore[valid-type,misc]
        def _construct_command_packer(self, packer: Any) -> Any:
            # redis-py's hiredis packer copies every argument into one new
            # buffer: a 1 MiB Pool task's RPUSH touched ~3 MiB of fresh pages
            # (~790 faults).  The lean packer hands large arguments on as they are.
            return _PooledPacker() if packer is None else packer

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
            self.note_wait()
            try:
                return super().read_response(*args, **kwargs)
            except exceptions.ResponseError as exc:
                text = str(exc)
                if isinstance(exc, exceptions.NoPermissionError) or "no permissions" in text.lower():
                    if not isinstance(exc, StatePermissionError):
                        raise _permission_error(exc) from exc
                raise

    CountingConnection.__name__ = CountingConnection.__qualname__ = f"Counting{base.__name__}"
    return CountingConnection


def _translate(exc: Exception) -> StateError:
    return StateError(f"Redis operation failed: {exc}")


#: What redis-py raises when the server goes away (translated to StateError).
_DROPPED = (exceptions.ConnectionError, exceptions.TimeoutError)


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

#: At most this many deferred replies left unread behind each other on one
#: connection (releases in a row with no other command): the next one waits.
_MAX_BEHIND = 64

#: Blocking commands and the position of their own timeout argument.
_BLOCKING = {"BLPOP": -1, "BRPOP": -1, "BLMOVE": -1, "BRPOPLPUSH": -1, "BLMPOP": 1}


def _dropped(exc: BaseException, where: str) -> StateError:
    """The error every faasmp call raises when its Redis connection fails."""
    return StateError(
        f"lost the connection to Redis at {where} ({type(exc).__name__}: {exc}); if the server "
        "stopped or restarted, this run's shared state is gone (see docs/reliability.md)"
    )


class _StateCore:
    """What both state backends share: the URL's read timeout, the run epoch, counts, the direct path."""

    direct: _DirectRedis

    def __init__(self, url: str, read_timeout: float) -> None:
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
        from ..config import redact_url

        self.url = url
        self.read_timeout = read_timeout
        self._where = redact_url(url)
        self._epoch: Key | None = None
        self._lost: StateLostError | None = None
        self._writes = _WriteCounter()
        # One command in metrics.SAMPLE_EVERY is timed: Redis latency as the
        # program's real operations see it (faasmp.stats.redis_latency).
        self.sampler = metrics.REGISTRY.sampler()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._where}>"

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

    def _check_epoch(self, conn: Any) -> None:
        """On a new connection, logged in: does the server still hold the run's epoch key?"""
        if self._lost is None and self._epoch is not None:
            conn.send_packed_command(conn.pack_command("EXISTS", self._epoch), check_health=False)
            if conn.read_response():
                return
            self.mark_lost("the server restarted, was flushed or evicted keys")
        if self._lost is not None:
            conn.disconnect()
            raise StateLostError(*self._lost.args)

    def blpop(self, keys: Sequence[Key], timeout: float) -> tuple[bytes, bytes] | None:
        """Pop from the first non-empty list, waiting up to *timeout* (0 = forever).

        On this thread's direct connection, whose reads carry the command's own
        wait (the pooled client's reads are cut after ``read_timeout``).
        """
        return self.direct.blpop(keys, timeout)

    def blmove_rotate(self, key: Key, timeout: float) -> bytes | None:
        """Wait until *key* has an element and return its last one, leaving it there."""
        return self.direct.blmove_rotate(key, timeout)


class RedisState(_StateCore):
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
        super().__init__(url, read_timeout)
        read_timeout = self.read_timeout
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
            **_no_setinfo_options(),
        }
        if not url.startswith("unix://"):
            opts["socket_keepalive"] = True
        opts["connection_class"] = _counting_connection_class(url, self._writes, ready)
        self._r = _import_redis().Redis.from_url(url, **opts)
        pool = self._r.connection_pool
        self.direct = _DirectRedis(lambda: pool.connection_class(**pool.connection_kwargs), self)
        # Pooled commands first collect this thread's deferred direct reply, so
        # a thread's commands run in program order whichever path they take.
        direct_flush, pooled_execute = self.direct.flush, self._r.execute_command
        where = self._where
        sampler = self.sampler

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

    def _on_connect(self, conn: Any) -> None:
        conn.on_connect()
        self._check_epoch(conn)

    def set(self, key: Key, value: Any, px: int | None = None, nx: bool = False) -> Any:
        return self._r.set(key, value, px=px, nx=nx)

    def hset(self, key: Key, mapping: dict[str, Any]) -> Any:
        return self._r.hset(key, mapping=mapping)  # type: ignore[arg-type]

    def ping(self) -> float:
        """Round-trip time of one PING in seconds."""
        t0 = time.perf_counter()
        try:
            self._r.ping()
        except exceptions.RedisError as exc:
            raise _translate(exc) from exc
        return time.perf_counter() - t0

    def time(self) -> float:
        sec, usec = self._r.time()
        return sec + usec / 1e6

    def lpop_many(self, key: Key, count: int) -> list[bytes]:
        """Pop up to *count* elements at once (empty list if none)."""
        return self._r.lpop(key, count) or []  # type: ignore[return-value]

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


def _as_bool(reply: Any) -> bool:
    return bool(reply)


def _ok_or_none(reply: Any) -> bool | None:
    """SET's reply as redis-py gives it: True when set, None when NX/XX kept it from being set."""
    return True if reply is not None else None


def _pairs(reply: Any) -> dict[Any, Any]:
    it = iter(reply)
    return dict(zip(it, it, strict=True))


def _members(reply: Any) -> set[Any]:
    return set(reply)


def _set_args(key: Key, value: Any, px: int | None, nx: bool) -> tuple[Any, ...]:
    args: tuple[Any, ...] = ("SET", key, value)
    if px is not None:
        args += ("PX", px)
    if nx:
        args += ("NX",)
    return args


def _hset_args(key: Key, mapping: dict[str, Any]) -> tuple[Any, ...]:
    if not mapping:
        raise exceptions.DataError("'hset' with no key value pairs")
    return ("HSET", key, *(x for pair in mapping.items() for x in pair))


class _DirectCommands:
    """:class:`StateOps` as RESP commands, each with its reply shaped as redis-py's client returns it.

    A subclass sends each command through :meth:`_run` (the state runs it,
    a pipeline queues it).
    """

    #: Send ``args`` (a whole command); ``shape`` turns its raw reply into what redis-py returns.
    _run: Callable[[tuple[Any, ...], Callable[[Any], Any] | None], Any]

    def rpush(self, key: Key, *values: Any) -> Any:
        return self._run(("RPUSH", key, *values), None)

    def lpush(self, key: Key, *values: Any) -> Any:
        return self._run(("LPUSH", key, *values), None)

    def lrange(self, key: Key, start: int, end: int) -> Any:
        return self._run(("LRANGE", key, start, end), None)

    def lindex(self, key: Key, index: int) -> Any:
        return self._run(("LINDEX", key, index), None)

    def llen(self, key: Key) -> Any:
        return self._run(("LLEN", key), None)

    def lrem(self, key: Key, count: int, value: Any) -> Any:
        return self._run(("LREM", key, count, value), None)

    def delete(self, *keys: Key) -> Any:
        return self._run(("DEL", *keys), None)

    def exists(self, *keys: Key) -> Any:
        return self._run(("EXISTS", *keys), None)

    def expire(self, key: Key, seconds: int) -> Any:
        return self._run(("EXPIRE", key, seconds), _as_bool)

    def pexpire(self, key: Key, millis: int) -> Any:
        return self._run(("PEXPIRE", key, millis), _as_bool)

    def get(self, key: Key) -> Any:
        return self._run(("GET", key), None)

    def getrange(self, key: Key, start: int, end: int) -> Any:
        return self._run(("GETRANGE", key, start, end), None)

    def set(self, key: Key, value: Any, px: int | None = None, nx: bool = False) -> Any:
        return self._run(_set_args(key, value, px, nx), _ok_or_none)

    def incrby(self, key: Key, amount: int = 1) -> Any:
        return self._run(("INCRBY", key, amount), None)

    def hset(self, key: Key, mapping: dict[str, Any]) -> Any:
        return self._run(_hset_args(key, mapping), None)

    def hget(self, key: Key, field: Key) -> Any:
        return self._run(("HGET", key, field), None)

    def hgetall(self, key: Key) -> Any:
        return self._run(("HGETALL", key), _pairs)

    def hexists(self, key: Key, field: Any) -> Any:
        return self._run(("HEXISTS", key, field), _as_bool)

    def hlen(self, key: Key) -> Any:
        return self._run(("HLEN", key), None)

    def hincrby(self, key: Key, field: str, amount: int = 1) -> Any:
        return self._run(("HINCRBY", key, field, amount), None)

    def sadd(self, key: Key, *values: Any) -> Any:
        return self._run(("SADD", key, *values), None)

    def srem(self, key: Key, *values: Any) -> Any:
        return self._run(("SREM", key, *values), None)

    def smembers(self, key: Key) -> Any:
        return self._run(("SMEMBERS", key), _members)

    def scard(self, key: Key) -> Any:
        return self._run(("SCARD", key), None)

    def publish(self, channel: Key, message: Any) -> Any:
        return self._run(("PUBLISH", channel, message), None)


class DirectState(_StateCore, _DirectCommands):
    """:class:`StateBackend` with every command on the direct path: no redis-py on its cold path.

    What a worker opens (``open_state(url, lean=True)``).  Its connections are
    :class:`~faasmp.backends.wire.RespConnection` (faasmp's own connect,
    TLS, AUTH and CLIENT SETNAME in one round trip, hiredis' parser);
    commands, pipelines and scripts go through :attr:`direct`, replies shaped
    as redis-py's client returns them, errors of redis-py's types.  Pub/sub
    and SCAN, which the direct path does not have, open a :class:`RedisState`
    (and import redis-py) the first time they are used.
    """

    def __init__(
        self,
        url: str,
        *,
        client_name: str = "faasmp",
        read_timeout: float = READ_TIMEOUT,
        ready: Callable[[], None] | None = None,
        endpoint: Endpoint | None = None,
    ) -> None:
        """Open (lazily: no connection is made here) the Redis at *url*; see :class:`RedisState`."""
        from .wire import parse_url  # noqa: PLC0415 - wire imports names of this module

        super().__init__(url, read_timeout)
        parsed = endpoint or parse_url(url)
        if parsed is None:
            raise ValueError(f"{self._where}: an option of this URL needs redis-py; open it with RedisState")
        self._endpoint = parsed
        self._client_name = client_name
        self._ready = ready
        self._fallback: RedisState | None = None
        self.direct = _DirectRedis(self._new_connection, self)

    def _new_connection(self) -> RespConnection:
        from .wire import RespConnection  # noqa: PLC0415

        writes = self._writes

        def count_write() -> None:
            writes.writes += 1

        def count_wait() -> None:
            writes.waits += 1

        return RespConnection(
            self._endpoint,
            client_name=self._client_name,
            socket_timeout=self.read_timeout,
            greeting=self._epoch_greeting,
            on_connect=self._epoch_checked,
            ready=self._ready,
            count_write=count_write,
            count_wait=count_wait,
            map_error=_map_response_error,
        )

    def _epoch_greeting(self) -> list[tuple[Any, ...]]:
        """The epoch check, written with a new connection's login (see :meth:`watch_epoch`)."""
        return [("EXISTS", self._epoch)] if self._lost is None and self._epoch is not None else []

    def _epoch_checked(self, conn: RespConnection, replies: list[Any]) -> None:
        if replies and not replies[0]:
            self.mark_lost("the server restarted, was flushed or evicted keys")
        if self._lost is not None:
            conn.disconnect()
            raise StateLostError(*self._lost.args)

    def _run(self, args: tuple[Any, ...], shape: Callable[[Any], Any] | None = None) -> Any:
        reply = self.direct.execute(*args)
        return reply if shape is None else shape(reply)

    def ping(self) -> float:
        """Round-trip time of one PING in seconds."""
        t0 = time.perf_counter()
        try:
            self.direct.execute("PING")
        except exceptions.RedisError as exc:
            raise _translate(exc) from exc
        return time.perf_counter() - t0

    def time(self) -> float:
        sec, usec = self.direct.execute("TIME")
        return int(sec) + int(usec) / 1e6

    def lpop_many(self, key: Key, count: int) -> list[bytes]:
        """Pop up to *count* elements at once (empty list if none)."""
        return self.direct.execute("LPOP", key, count) or []  # type: ignore[no-any-return]

    def pipeline(self, transaction: bool = False) -> StatePipeline:
        return _DirectPipeline(self, transaction)

    def script(self, source: str) -> ScriptCall:
        return self.direct.script(source)

    def _redis_py(self) -> RedisState:
        """A redis-py client of the same server, for what the direct path lacks (opened once)."""
        if self._fallback is None:
            state = RedisState(
                self.url, client_name=self._client_name, read_timeout=self.read_timeout, ready=self._ready
            )
            state._writes = self._writes  # one count per process' state
            if self._epoch is not None:
                state.watch_epoch(self._epoch)
            state._lost = self._lost
            self._fallback = state
        return self._fallback

    def watch_epoch(self, key: Key) -> None:
        super().watch_epoch(key)
        if self._fallback is not None:
            self._fallback.watch_epoch(key)

    def mark_lost(self, reason: str) -> None:
        super().mark_lost(reason)
        if self._fallback is not None:
            self._fallback._lost = self._lost  # one verdict for both paths of this state

    def scan_keys(self, pattern: str) -> Iterator[bytes]:
        self.direct.flush()  # this thread's commands stay in program order
        return self._redis_py().scan_keys(pattern)

    def subscribe(self, *channels: Key) -> Subscription:
        self.direct.flush()
        return self._redis_py().subscribe(*channels)

    def close(self) -> None:
        try:
            self.direct.close()
        finally:
            if self._fallback is not None:
                self._fallback.close()


def _map_response_error(exc: exceptions.ResponseError) -> BaseException:
    """An ACL refusal as the error that says what to fix (as the client's connections do)."""
    if isinstance(exc, exceptions.NoPermissionError) or "no permissions" in str(exc).lower():
        if not isinstance(exc, StatePermissionError):
            return _permission_error(exc)
    return exc


class _DirectPipeline(_DirectCommands):
    """Commands queued, then sent in one write on the direct path (:meth:`execute`: one round trip).

    ``transaction=True`` wraps them in MULTI/EXEC, as redis-py's pipeline does.
    The first error reply raises once every reply is read (redis-py's default).
    """

    def __init__(self, state: DirectState, transaction: bool) -> None:
        self._state = state
        self._transaction = transaction
        self._commands: list[tuple[Any, ...]] = []
        self._shapes: list[Callable[[Any], Any] | None] = []

    def _run(self, args: tuple[Any, ...], shape: Callable[[Any], Any] | None = None) -> Any:
        self._commands.append(args)
        self._shapes.append(shape)
        return self

    def __len__(self) -> int:
        return len(self._commands)

    def execute(self) -> list[Any]:
        commands, shapes = self._commands, self._shapes
        self._commands, self._shapes = [], []
        if not commands:
            return []
        state = self._state
        if state._lost is not None:
            raise StateLostError(*state._lost.args)
        if self._transaction:
            # One write; a command Redis refuses to queue aborts the EXEC (EXECABORT).
            replies = state.direct.execute_many([("MULTI",), *commands, ("EXEC",)])[-1]
            if replies is None:
                raise exceptions.WatchError("Watched variable changed.")
        else:
            replies = state.direct.execute_many(commands)
        for number, (reply, command) in enumerate(zip(replies, commands, strict=True), 1):
            if isinstance(reply, exceptions.ResponseError):
                # Named as redis-py's pipeline names it.
                words = (c.decode(errors="replace") if isinstance(c, bytes) else f"{c}" for c in command)
                text = " ".join(words)
                text = text if len(text) <= 100 else text[:97] + "..."
                message = f"Command # {number} ({text}) of pipeline caused error: {reply}"
                reply.args = (message, *reply.args[1:])
                raise reply
        return [r if shape is None else shape(r) for r, shape in zip(replies, shapes, strict=True)]


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
    exceptions.ConnectionError,
    exceptions.TimeoutError,
    ConnectionError,
    OSError,
)

StateFactory = Callable[..., StateBackend]
_STATE_BACKENDS: dict[str, StateFactory] = {}
_LEAN_STATE_BACKENDS: dict[str, StateFactory] = {}


def register_state_backend(scheme: str, factory: StateFactory, *, lean: StateFactory | None = None) -> None:
    """Register *factory* (called as ``factory(url, client_name=..., ready=...)``) for ``scheme://`` URLs.

    *lean*, if given, is what ``open_state(..., lean=True)`` uses instead (a
    worker's state, opened on its cold path); without it, *factory*.
    """
    _STATE_BACKENDS[scheme] = factory
    if lean is None:
        _LEAN_STATE_BACKENDS.pop(scheme, None)
    else:
        _LEAN_STATE_BACKENDS[scheme] = lean


def open_state(
    url: str, client_name: str = "faasmp", ready: Callable[[], None] | None = None, *, lean: bool = False
) -> StateBackend:
    """Open a state backend for *url*; unknown schemes list the known ones.

    *ready* is called before each new connection (see :class:`RedisState`).
    *lean*: the backend a worker opens before its first task, which should
    import as little as it can (:class:`DirectState` for Redis URLs).
    """
    scheme = url.split("://", 1)[0]
    factory = _STATE_BACKENDS.get(scheme)
    if factory is None:
        raise ValueError(f"no state backend for URL scheme {scheme!r}; known: {sorted(_STATE_BACKENDS)}")
    if lean:
        factory = _LEAN_STATE_BACKENDS.get(scheme, factory)
    return factory(url, client_name=client_name, ready=ready)


def _open_lean_redis(url: str, **options: Any) -> StateBackend:
    """:class:`DirectState` where faasmp's own connection can open *url*, else :class:`RedisState`.

    redis-py stays the one for URL options the direct connection does not
    implement, and where hiredis (its reply parser) is missing.
    """
    from .wire import hiredis_available, parse_url  # noqa: PLC0415

    endpoint = parse_url(url)
    if endpoint is not None and hiredis_available():
        return DirectState(url, endpoint=endpoint, **options)  # type: ignore[return-value]
    return RedisState(url, **options)  # type: ignore[return-value]


for _scheme in ("redis", "rediss", "unix"):
    register_state_backend(_scheme, RedisState, lean=_open_lean_redis)  # type: ignore[arg-type]


#: Set by Lithops' worker handler before it loads the function it runs: this
#: process is a worker, whose state is a DirectState (no redis-py).
LITHOPS_WORKER_ENV = "LITHOPS_WORKER"

# A client imports redis-py with faasmp, as before workers stopped needing it:
# imported lazily instead, its ~50-60 ms moved into the program's first Pool()
# or Process() (Pool(8) creation 0.012 -> 0.070-0.097 s in the cold row,
# `run_all.py --bench pool_create_cold`, load ~3.5), and a program's total is
# the same either way.  A Lithops worker skips it: its first task does not wait.
if LITHOPS_WORKER_ENV not in os.environ:
    _import_redis()

# Last: the direct path builds on the names above (its module imports them).
from .direct import _DirectRedis  # noqa: E402
