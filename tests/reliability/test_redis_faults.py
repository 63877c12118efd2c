"""Redis faults: unreachable at start, killed or restarted mid-run, flushed.

What we guarantee (docs/reliability.md): a call that needs Redis never
hangs on a dead server and never returns data from a server that lost the
run's state.  In-flight calls fail with ``StateError`` (connection lost);
once a reconnect finds the run's epoch key gone, every call of the run fails
with ``StateLostError``.  The run recovers by shutting it down: the next use
of the context starts a new run on the (restarted) server.
"""

from __future__ import annotations

import secrets
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
    assert time.monotonic() - t0 < BOUND
    assert "FAASMP_REDIS_URL" in str(info.value)
    assert password not in str(info.value) and password not in repr(info.value.__cause__)
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
    outcome, threads = _start_all(calls)
    time.sleep(1.0)
    server.kill()
    _join_all(threads, outcome, list(calls))
    for name, (how, what) in outcome.items():
        assert how == "raised" and isinstance(what, StateError), f"{name}: {how} {what!r}"
        assert "lost the connection to Redis" in str(what)
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
