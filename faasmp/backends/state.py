"""State backend: where every shared object and message of a run lives.

This module, :mod:`~faasmp.backends.direct` (the per-thread hot path) and
:mod:`~faasmp.backends.resp` (its wire) are the only modules that import
``redis``.  The rest of faasmp talks to :class:`StateBackend`, a narrow
protocol of the commands it needs, so another
implementation (a Redis Cluster client, valkey-glide, ...) can be registered
with :func:`register_state_backend` and the whole API suite run over it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import urllib.parse
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
            self.note_wait()
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


# Last: the direct path builds on the names above (its module imports them).
from .direct import _DirectRedis  # noqa: E402
