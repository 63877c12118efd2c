"""Redis faults: unreachable at start, killed or restarted mid-run, flushed.

What we guarantee (docs/reliability.md): a call that needs Redis never
hangs on a dead server and never returns data from a server that lost the
run's state.  In-flight calls fail with ``StateError`` (connection lost);
once a reconnect finds the run's epoch key gone, every call of the run fails
with ``StateLostError``.  The run recovers by shutting it down: the next use
of the context starts a new run on the (restarted) server.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from faasmp.backends.server import find_server_binary
from faasmp.backends.state import StateError, StateLostError
from faasmp.context import FaasContext
from tests import helpers
from tests.conftest import TEST_SETTINGS

BOUND = 30.0  # seconds: loose bound for "fails fast, never hangs"
#: Redis' connect timeout in faasmp (backends/state.py) and the margin a loaded machine may add.
CONNECT_TIMEOUT, MARGIN = 5.0, 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RestartableServer:
    """A valkey-server on TCP loopback with a password that a test can kill and restart."""

    def __init__(self, *extra: str) -> None:
        self.port = _free_port()
        self.password = secrets.token_hex(16)
        self.dir = tempfile.mkdtemp(prefix="faasmp-rel-redis-")
        self.extra = extra
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        args = [find_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--requirepass", self.password, "--save", "", "--dir", self.dir, *self.extra]
        if "--appendonly" not in self.extra:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def server() -> Iterator[RestartableServer]:
    s = RestartableServer()
    yield s
    s.kill()


@pytest.fixture
def run(server: RestartableServer) -> Iterator[FaasContext]:
    ctx = FaasContext(redis_url=server.url, **TEST_SETTINGS)
    yield ctx
    ctx.shutdown()


def _in_flight(ctx: FaasContext) -> dict[str, Callable[[], Any]]:
    """Blocking calls that are waiting on Redis when the server goes away."""
    pool = ctx.Pool(2)
    assert pool.map(helpers.square, [1, 2]) == [1, 4]  # workers are up
    q = ctx.Queue()
    q.put("before")
    assert q.get(timeout=10) == "before"
    lock = ctx.Lock()
    lock.acquire()
    ev = ctx.Event()
    proc = ctx.Process(target=helpers.sleep_then, args=(60,))
    proc.start()
    return {
        "Pool.map": lambda: pool.map(helpers.sleep_then, [60, 60]),
        "Queue.get": lambda: q.get(),
        "Lock.acquire": lambda: lock.acquire(),
        "Event.wait": lambda: ev.wait(),
        "Process.join": lambda: (proc.join(), proc.exitcode)[1],
    }


def _start_all(calls: dict[str, Callable[[], Any]]) -> tuple[dict[str, Any], list[threading.Thread]]:
    outcome: dict[str, Any] = {}

    def runner(name: str, call: Callable[[], Any]) -> None:
        try:
            outcome[name] = ("returned", call())
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
            outcome[name] = ("raised", exc)

    threads = [threading.Thread(target=runner, args=item, daemon=True) for item in calls.items()]
    for t in threads:
        t.start()
    return outcome, threads


def _timed(calls: dict[str, Callable[[], Any]]) -> tuple[dict[str, Callable[[], Any]], dict[str, float]]:
    """*calls* wrapped to note when each returned or raised (``time.monotonic()``)."""
    finished: dict[str, float] = {}

    def timed(name: str, call: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            try:
                return call()
            finally:
                finished[name] = time.monotonic()

        return run

    return {name: timed(name, call) for name, call in calls.items()}, finished


def _join_all(threads: list[threading.Thread], outcome: dict[str, Any], names: list[str]) -> None:
    deadline = time.monotonic() + BOUND
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0))
    hung = sorted(set(names) - set(outcome))
    assert not hung, f"calls still blocked {BOUND:.0f}s after the Redis fault: {hung}"


def test_unreachable_redis_at_start_is_a_clear_error_within_seconds():
    password = secrets.token_hex(8)
    url = f"redis://:{password}@127.0.0.1:{_free_port()}/0"  # nothing listens there
    ctx = FaasContext(redis_url=url, **TEST_SETTINGS)
    t0 = time.monotonic()
    with pytest.raises(StateError, match=r"cannot reach Redis at redis://:\*\*\*@127\.0\.0\.1") as info:
        ctx.Queue()
    took = time.monotonic() - t0
    print(f"refused port: StateError after {took:.2f} s")
    assert took < MARGIN  # a refused connection is reported at once (measured 0.0 s)
    assert "FAASMP_REDIS_URL" in str(info.value)
    assert password not in str(info.value) and password not in repr(info.value.__cause__)
    ctx.shutdown()


class SilentListener:
    """Loopback addresses that never answer (no outside address is ever contacted).

    ``full``: a listening socket whose accept queue is full, so the kernel drops
    new SYNs and ``connect()`` never completes (the connect-timeout path).
    ``mute``: a listening socket that completes the handshake but never sends a
    byte (the read-timeout path of the connection's handshake).
    """

    def __init__(self) -> None:
        self.full_sock = socket.socket()
        self.full_sock.bind(("127.0.0.1", 0))
        self.full_sock.listen(0)  # accept queue of one, never accepted
        self.full = self.full_sock.getsockname()[1]
        self.fillers = [socket.create_connection(("127.0.0.1", self.full), timeout=2)]
        self.mute_sock = socket.socket()
        self.mute_sock.bind(("127.0.0.1", 0))
        self.mute_sock.listen(8)
        self.mute = self.mute_sock.getsockname()[1]

    def close(self) -> None:
        for s in (*self.fillers, self.full_sock, self.mute_sock):
            s.close()


@pytest.fixture
def silent() -> Iterator[SilentListener]:
    listener = SilentListener()
    yield listener
    listener.close()


def test_address_that_never_answers_is_a_clear_error_after_the_connect_timeout(silent):
    # Guards the guard: a plain connect to this address times out (SYN dropped, not refused).
    with pytest.raises(TimeoutError), socket.create_connection(("127.0.0.1", silent.full), timeout=1):
        pass
    # The mute address is read-bounded: 2 s (``?socket_timeout=``) instead of 10 s, to save time.
    for port, what, timeout in ((silent.full, "connect", CONNECT_TIMEOUT), (silent.mute, "handshake", 2.0)):
        query = "" if what == "connect" else f"?socket_timeout={timeout}"
        ctx = FaasContext(redis_url=f"redis://127.0.0.1:{port}/0{query}", **TEST_SETTINGS)
        t0 = time.monotonic()
        with pytest.raises(StateError, match=r"cannot reach Redis at redis://127\.0\.0\.1") as info:
            ctx.Queue()
        took = time.monotonic() - t0
        print(f"never-answering address ({what}): StateError after {took:.1f} s")
        assert "Timeout" in str(info.value) and "FAASMP_REDIS_URL" in str(info.value)
        # One attempt, bounded by its own timeout.
        assert took < timeout + MARGIN, f"{what}: took {took:.1f} s"
        ctx.shutdown()


def test_wrong_password_at_start_is_a_clear_error(server):
    ctx = FaasContext(
        redis_url=f"redis://:wrong-{server.password}@127.0.0.1:{server.port}/0", **TEST_SETTINGS
    )
    with pytest.raises(StateError, match="cannot reach Redis") as info:
        ctx.Lock()
    assert server.password not in str(info.value)
    ctx.shutdown()


def test_restart_mid_run_fails_in_flight_calls_then_the_run_can_start_again(server, run):
    """Kill the server while five kinds of call block on it, restart it empty (injected fault)."""
    calls = _in_flight(run)
    value = run.Value("i", 41)
    outcome, threads = _start_all(calls)
    time.sleep(1.0)  # let every call block inside Redis
    server.kill()
    server.start()  # same port, empty keyspace (no persistence)
    _join_all(threads, outcome, list(calls))
    for name, (how, what) in outcome.items():
        # Never a value from the emptied server (an exitcode, a map result, an item).
        assert how == "raised", f"{name} returned {what!r} after Redis lost the run's state"
        assert isinstance(what, StateError), f"{name}: {what!r}"
        assert "Redis at redis://:***@127.0.0.1" in str(what), str(what)
    # Later calls do not silently read the empty server: the run is marked lost.
    with pytest.raises(StateLostError, match="no longer holds this faasmp run's state"):
        _ = value.value
    with pytest.raises(StateLostError):
        run.Queue().get(timeout=1)
    # Recovery: shut the run down; the next use starts a new run on the new server.
    run.shutdown()
    with run.Pool(2) as p:
        assert p.map(helpers.square, range(5)) == [0, 1, 4, 9, 16]
    q = run.Queue()
    q.put("after")
    assert q.get(timeout=10) == "after"


def test_server_gone_for_good_fails_every_call_without_hanging(server, run):
    calls = _in_flight(run)
    used = run.Queue()
    used.put(0)
    assert used.get(timeout=10) == 0  # this thread's connection is open when the server dies
    timed, finished = _timed(calls)
    outcome, threads = _start_all(timed)
    time.sleep(1.0)
    server.kill()
    killed = time.monotonic()
    _join_all(threads, outcome, list(calls))
    for name, (how, what) in outcome.items():
        assert how == "raised" and isinstance(what, StateError), f"{name}: {how} {what!r}"
        assert "lost the connection to Redis" in str(what)
    latency = {name: round(t - killed, 2) for name, t in finished.items()}
    print(f"dead server detected after (s): {latency}")
    # A dropped connection fails a call at once; the pool fails its results once the backend
    # has been failing for 3 heartbeats (at least 6 s): docs/reliability.md.
    pool_grace = max(3 * TEST_SETTINGS["heartbeat_interval"], 6.0)
    slow = {n: t for n, t in latency.items() if t >= MARGIN + (pool_grace if n == "Pool.map" else 0)}
    assert not slow, f"detected later than {MARGIN:.0f} s (+{pool_grace:.0f} s for Pool.map): {latency}"
    t0 = time.monotonic()
    # A put on an unbounded queue does not wait for Redis' reply: written to
    # the dropped connection it may return, but then the next put says so.
    try:
        used.put(1)
    except StateError as exc:
        assert "lost the connection" in str(exc)
    else:
        with pytest.raises(
            StateError, match=r"an earlier item put on .* was not stored: lost the connection"
        ):
            used.put(2)
    q = run.Queue()  # makes no Redis call yet
    with pytest.raises(StateError):
        q.put(1)
        q.get(timeout=1)
    with pytest.raises(StateError):
        run.Pool(1)
    assert time.monotonic() - t0 < BOUND
    server.start()  # let the fixture's shutdown find a server (it tolerates none too)


def test_flushed_server_is_detected_by_the_monitor(server, run):
    """FLUSHALL without a reconnect (injected fault): the client's next beat marks the run lost."""
    q = run.Queue()
    q.put("precious")
    server.client().flushall()
    deadline = time.monotonic() + BOUND
    while True:
        try:
            item = q.get(timeout=0.2)
        except StateLostError:
            break
        except Exception as exc:  # noqa: BLE001 - queue.Empty until the beat notices
            assert type(exc).__name__ == "Empty", repr(exc)
        else:
            pytest.fail(f"got {item!r} from a flushed server")
        assert time.monotonic() < deadline, "the flushed keyspace was never detected"


def test_persistent_server_restart_keeps_the_run(tmp_path):
    """An external Redis with an append-only file restarts with the run's state intact."""
    server = RestartableServer("--appendonly", "yes", "--appendfsync", "always")
    ctx = FaasContext(redis_url=server.url, **TEST_SETTINGS)
    try:
        q = ctx.Queue()
        q.put("kept")
        value = ctx.Value("i", 7)
        server.kill()
        server.start()
        # A connection that was open across the restart fails its next call
        # once (the call may or may not have run: never retried blindly);
        # the call after it reconnects and finds the run intact.
        assert _after_reconnect(lambda: q.get(timeout=10)) == "kept"
        assert _after_reconnect(lambda: value.value) == 7
        with ctx.Pool(1) as p:
            assert _after_reconnect(lambda: p.apply(helpers.square, (6,))) == 36
    finally:
        ctx.shutdown()
        server.kill()


def _after_reconnect(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except StateError as exc:
        assert not isinstance(exc, StateLostError), exc
        assert "lost the connection" in str(exc)
        return call()


#: A frozen server is given this read timeout (``?socket_timeout=`` in the URL).
FROZEN_READ_TIMEOUT = 1.0


def test_frozen_server_fails_every_call_within_its_read_timeout(server):
    """SIGSTOP the server while five kinds of call block on it (injected fault).

    A frozen server keeps its sockets open and answers nothing: only a read
    timeout tells it from a slow one.  Every call fails with ``StateError``
    within one split wait plus the read timeout (2 x 1 s here; 2 x 10 s by
    default); Pool results fail when the pool's handler sees the backend fail.
    """
    ctx = FaasContext(redis_url=f"{server.url}?socket_timeout={FROZEN_READ_TIMEOUT}", **TEST_SETTINGS)
    assert server.proc is not None
    try:
        calls = _in_flight(ctx)
        timed, finished = _timed(calls)
        outcome, threads = _start_all(timed)
        time.sleep(1.5)  # every call is blocked inside Redis
        assert not outcome, f"returned before the fault: {outcome}"
        os.kill(server.proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        _join_all(threads, outcome, list(calls))
        latency = {name: round(t - t0, 2) for name, t in finished.items()}
        print(f"frozen server detected after (s): {latency}")
        for name, (how, what) in outcome.items():
            assert how == "raised" and isinstance(what, StateError), f"{name}: {how} {what!r}"
            assert "lost the connection to Redis" in str(what), f"{name}: {what}"
        # A call: its split wait + the read timeout.  Pool results: the pool fails them once the
        # backend has failed for 3 heartbeats, at least 6 s (survives a blip; docs/reliability.md).
        bound = 2 * FROZEN_READ_TIMEOUT + MARGIN
        pool_grace = max(3 * TEST_SETTINGS["heartbeat_interval"], 6.0)
        slow = {n: t for n, t in latency.items() if t >= bound + (pool_grace if n == "Pool.map" else 0)}
        assert not slow, f"detected later than {bound:.0f} s (+{pool_grace:.0f} s for Pool.map): {latency}"
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        ctx.shutdown()


def test_socket_timeout_in_the_url_is_validated():
    with pytest.raises(StateError, match=r"socket_timeout must be a positive number of seconds, got 'x'"):
        FaasContext(redis_url="redis://127.0.0.1:1/0?socket_timeout=x", **TEST_SETTINGS).Queue()
