"""A cold worker imports and defines only what its first task needs.

Every Lithops invocation is a fresh interpreter that imports faasmp's worker
entry (``faasmp.runtime.worker``) before it can take its first task, so the
cost of that import is paid on every cold Process and every cold Pool.  Two
things are kept out of it:

* numpy (~36 ms to import): only a process that really holds shared memory
  diffs it with numpy, and imports it then;
* generated code: a frozen dataclass costs ~0.45 ms to define (its methods are
  compiled at class creation).  The protocol's 18 messages are plain slotted
  records instead; the number of dataclasses the import defines is recorded
  below and may only go down;
* a full collection of the heap the job process inherited from Lithops'
  runner (~15 ms in a cold worker): a worker freezes its startup heap
  (``gc.freeze()``) as its entry module is imported;
* redis-py (~50 ms: its package imports its asyncio client, cluster support
  and OpenTelemetry hooks): a worker opens its state as a ``DirectState``,
  whose connection faasmp opens itself (``faasmp.backends.wire``), and runs
  its first tasks without redis-py.  That state must answer and fail exactly
  as the client's redis-py one does, over a unix socket, TCP and TLS with an
  ACL user.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from faasmp.backends.server import EmbeddedServer
from faasmp.backends.state import (
    LITHOPS_WORKER_ENV,
    DirectState,
    RedisState,
    StateBackend,
    StateError,
    open_state,
)
from faasmp.context import FaasContext, default_context
from faasmp.runtime import protocol as msgs
from tests.conftest import TEST_SETTINGS, ExternalServer
from tests.helpers_shm import fill_view

_ROOT = Path(__file__).resolve().parents[1]

#: Dataclasses defined by ``import faasmp.runtime.worker`` (2026-12-04: 27, the
#: package's own API with faasmp.stats' records included; 45 while the
#: protocol's messages were dataclasses).  Lower it when it drops.
WORKER_IMPORT_DATACLASSES = 27

_PROBE = """
import dataclasses, json, sys
import faasmp.runtime.worker  # what a Lithops invocation imports to run host_main
defined = sorted(
    f"{name}.{attr}"
    for name, module in list(sys.modules.items())
    if name.startswith("faasmp")
    for attr, value in vars(module).items()
    if isinstance(value, type) and value.__module__ == name and dataclasses.is_dataclass(value)
)
print(json.dumps({"numpy": "numpy" in sys.modules, "redis": "redis" in sys.modules, "dataclasses": defined}))
"""


def _probe(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter of this tree (with *env*, else this environment)."""
    argv = [sys.executable, "-c", code]
    return subprocess.run(argv, cwd=_ROOT, capture_output=True, text=True, timeout=60, check=False, env=env)


@pytest.fixture(scope="module")
def worker_import() -> dict[str, Any]:
    """What a fresh interpreter holds after importing the worker entry (this tree's faasmp)."""
    # As in a Lithops worker: its handler sets LITHOPS_WORKER before it loads the function.
    done = _probe(_PROBE, {**os.environ, LITHOPS_WORKER_ENV: "True"})
    assert done.returncode == 0, f"importing faasmp.runtime.worker failed:\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.timeout(90)
def test_the_worker_entry_does_not_import_numpy(worker_import: dict[str, Any]) -> None:
    assert not worker_import["numpy"], "importing faasmp.runtime.worker imported numpy"


@pytest.mark.timeout(90)
def test_the_worker_entry_does_not_import_redis_py(worker_import: dict[str, Any]) -> None:
    assert not worker_import["redis"], "importing faasmp.runtime.worker imported redis-py's package"


@pytest.mark.timeout(90)
def test_a_client_imports_redis_py_with_faasmp_not_at_its_first_pool() -> None:
    # The client keeps redis-py: imported with faasmp, so that the program's first
    # Pool() or Process() does not pay for it (the cold Pool-creation row).
    env = {k: v for k, v in os.environ.items() if k != LITHOPS_WORKER_ENV}
    done = _probe("import sys, faasmp; print('redis' in sys.modules)", env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True", "import faasmp left redis-py's import to the first Pool()"


@pytest.mark.timeout(90)
def test_redis_py_imported_after_faasmp_has_the_same_exceptions() -> None:
    # faasmp loads redis-py's exceptions module alone; a program importing redis-py
    # afterwards must see one set of classes, reachable as redis.exceptions.
    probe = (
        "import os; os.environ['LITHOPS_WORKER'] = 'True'\n"
        "import faasmp.runtime.worker\n"
        "from faasmp.backends.errors import exceptions\n"
        "import redis\n"
        "assert redis.exceptions is exceptions, 'two redis.exceptions modules'\n"
        "assert redis.ConnectionError is redis.exceptions.ConnectionError is exceptions.ConnectionError\n"
        "from redis._parsers.base import _RESPBase\n"
        "assert _RESPBase.EXCEPTION_CLASSES['NOSCRIPT'] is exceptions.NoScriptError\n"
    )
    done = _probe(probe)
    assert done.returncode == 0, f"redis-py imported after faasmp:\n{done.stderr}"


@pytest.mark.timeout(90)
def test_the_worker_entry_defines_no_more_dataclasses_than_recorded(worker_import: dict[str, Any]) -> None:
    defined = worker_import["dataclasses"]
    assert len(defined) <= WORKER_IMPORT_DATACLASSES, (
        f"importing faasmp.runtime.worker defines {len(defined)} dataclasses "
        f"(recorded {WORKER_IMPORT_DATACLASSES}; each costs every cold worker ~0.45 ms): {defined}"
    )


def test_protocol_messages_keep_the_frozen_dataclass_behaviour() -> None:
    timing = msgs.TaskTiming(1.0, 2.0, 3.0, 4096, 0.5, "h:1", False)
    done = msgs.TaskDone(7, 3, True, b"value", timing)
    # Equality and hashing by class and fields, as a frozen dataclass'.
    again = msgs.TaskDone(7, 3, True, b"value", msgs.TaskTiming(1.0, 2.0, 3.0, 4096, 0.5, "h:1", False))
    assert done == again and hash(done) == hash(again)
    assert done != msgs.TaskDone(7, 4, True, b"value", timing)
    assert msgs.WorkerExited("s", "r") != msgs.KillBusy("s", "r")  # same fields, another class
    assert repr(msgs.KillBusy("s1", "p1")) == "KillBusy(slot='s1', pool_id='p1')"
    # Frozen, with no instance dict to write around it.
    with pytest.raises(dataclasses.FrozenInstanceError, match="'job'"):
        done.job = 8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del done.ok  # type: ignore[misc]
    assert not hasattr(done, "__dict__")
    # Keyword arguments and defaults.
    serving = msgs.ServingPool("p", 1, 2, delivering=True)
    assert (serving.job, serving.index, serving.delivering, serving.busy) == (1, 2, True, False)
    assert msgs.ServingPool("p") == msgs.ServingPool(pool_id="p", job=None, index=None, delivering=False)
    # Pickle (generic and the hot messages' own reductions) and match patterns.
    for message in (
        done,
        msgs.TaskDone(1, 0, False, b"", None),
        serving,
        msgs.PoolTask(1, 0, b"k", msgs.TaskMode.STARMAP, b"c"),
        msgs.PoolLease("p", None, 2, 1, "PoolWorker-1"),
        msgs.SENTINEL,
        msgs.HostRegistered("h", 1.5, 2.5),
    ):
        assert pickle.loads(pickle.dumps(message, pickle.HIGHEST_PROTOCOL)) == message
    match msgs.KillBusy("s1", "p1"):
        case msgs.KillBusy(slot, pool_id="p1"):
            assert slot == "s1"
        case _:
            pytest.fail("KillBusy did not match its positional pattern")


@pytest.mark.timeout(120)
def test_a_process_given_a_raw_array_still_writes_it_through_numpy(default_ctx: Any) -> None:
    # numpy is imported where shared memory is diffed (and here by the target's module).
    arr = default_ctx.RawArray("d", 64)
    p = default_ctx.Process(target=fill_view, args=(arr, 8, 24, 2.5))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert arr[:] == [0.0] * 8 + [2.5] * 16 + [0.0] * 40


def test_every_public_name_still_resolves_from_the_package() -> None:
    import faasmp  # noqa: PLC0415

    missing = [name for name in faasmp.__all__ if not hasattr(faasmp, name)]
    assert missing == [], f"faasmp.__all__ names {missing}, which the package does not resolve"
    assert faasmp.Pool == faasmp.get_context().Pool  # bound to the default context, as in CPython
    assert callable(faasmp.patch) and faasmp.Process.__module__ == "faasmp.process"
    with pytest.raises(AttributeError, match="no attribute 'Poool'"):
        faasmp.Poool  # noqa: B018


# -- a worker's first tasks without redis-py ------------------------------------


def _worker_view(_: object = None) -> tuple[bool, str, bool]:
    """In a worker: redis-py imported?  The class of its state; its startup heap frozen?"""
    frozen = gc.get_freeze_count() > 0
    return "redis" in sys.modules, type(default_context().session.state).__name__, frozen


def _exit_if_redis_py() -> None:
    """A Process target: exits 3 if redis-py is imported, 4 if its state is another, 5 if not frozen."""
    imported, state, frozen = _worker_view()
    if imported:
        sys.exit(3)
    if state != "DirectState":
        sys.exit(4)
    if not frozen:
        sys.exit(5)


@pytest.fixture(params=["embedded", "external"])
def cold_ctx(request: pytest.FixtureRequest) -> Iterator[FaasContext]:
    """A context of its own, so that its hosts are cold (started for this test, not warm from others)."""
    server = ExternalServer() if request.param == "external" else None
    url = {} if server is None else {"redis_url": server.url}
    context = FaasContext(**url, **TEST_SETTINGS)
    try:
        yield context
    finally:
        context.shutdown()
        if server is not None:
            server.stop()


@pytest.mark.timeout(180)
def test_a_cold_worker_runs_its_first_tasks_without_redis_py(cold_ctx: FaasContext) -> None:
    with cold_ctx.Pool(2) as pool:
        views = pool.map(_worker_view, range(4), chunksize=1)
    # (redis-py imported, state class, startup heap frozen for the cyclic collector)
    assert views == [(False, "DirectState", True)] * 4, f"a Pool worker's cold path differs: {views}"
    proc = cold_ctx.Process(target=_exit_if_redis_py)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0, (
        f"a Process imported redis-py (3), opened another state (4) or was not frozen (5): {proc.exitcode}"
    )
    assert gc.get_freeze_count() == 0, "the client froze its heap (only a Lithops worker should)"


# -- DirectState answers and fails as redis-py's client does ---------------------


@pytest.fixture(scope="module")
def embedded_server() -> Iterator[EmbeddedServer]:
    server = EmbeddedServer.start()
    yield server
    server.stop()


@pytest.fixture(params=["unix", "tcp", "tls-acl"])
def server_url(
    request: pytest.FixtureRequest, embedded_server: EmbeddedServer, external_server: ExternalServer
) -> Iterator[str]:
    """A URL of each kind faasmp opens: the embedded unix socket (password), TCP (password, db in the
    path), TLS through stunnel as faasmp's ACL user (user, password, CA file)."""
    if request.param == "unix":
        yield embedded_server.url
        return
    if request.param == "tcp":
        yield external_server.url
        return
    if not (shutil.which("stunnel4") or shutil.which("stunnel")) or not shutil.which("openssl"):
        pytest.skip("TLS needs stunnel4 and openssl (.ci/run installs the Debian packages)")
    from tests.test_cloud_acl import TlsFront  # noqa: PLC0415

    front = TlsFront(external_server)
    user = external_server.acl_user_url("faasmp-cold").split("://", 1)[1].split("@", 1)[0]
    try:
        yield f"rediss://{user}@127.0.0.1:{front.port}/0?ssl_ca_certs={front.ca}"
    finally:
        front.stop()


def _session(state: StateBackend) -> list[Any]:
    """Commands, pipelines and scripts of every shape the backends use, and their replies."""
    k = "fmp:cold-import:"
    state.delete(f"{k}s", f"{k}h", f"{k}set", f"{k}l", f"{k}n")
    out: list[Any] = [
        state.set(f"{k}s", b"v"),
        state.set(f"{k}s", b"w", nx=True),
        state.set(f"{k}s", "x", px=60_000),
        state.get(f"{k}s"),
        state.getrange(f"{k}s", 0, 0),
        state.hset(f"{k}h", {"a": 1, "b": "2", "c": b"3"}),
        state.hgetall(f"{k}h"),
        state.hget(f"{k}h", "a"),
        state.hexists(f"{k}h", "zz"),
        state.hincrby(f"{k}h", "a", 4),
        state.hlen(f"{k}h"),
        state.sadd(f"{k}set", "x", "y"),
        state.smembers(f"{k}set"),
        state.srem(f"{k}set", "y"),
        state.scard(f"{k}set"),
        state.rpush(f"{k}l", 1, 2.5, b"3"),
        state.lpush(f"{k}l", "0"),
        state.lrange(f"{k}l", 0, -1),
        state.lindex(f"{k}l", 1),
        state.llen(f"{k}l"),
        state.lpop_many(f"{k}l", 2),
        state.lpop_many(f"{k}l:none", 2),
        state.pexpire(f"{k}l", 60_000),
        state.expire(f"{k}none", 5),
        state.exists(f"{k}s", f"{k}h", f"{k}none"),
        state.incrby(f"{k}n", 7),
        state.publish(f"{k}chan", b"m"),
    ]
    for transaction in (True, False):
        pipe = state.pipeline(transaction=transaction)
        pipe.hset(f"{k}h", {"d": 4})
        pipe.pexpire(f"{k}h", 60_000)
        pipe.hgetall(f"{k}h")
        pipe.smembers(f"{k}set")
        pipe.set(f"{k}s", b"y", nx=True)
        out.append((len(pipe), pipe.execute()))
    script = state.script("return {KEYS[1], ARGV[1], redis.call('GET', KEYS[1])}")
    out.append(script(keys=[f"{k}s"], args=[5]))
    out.append(state.time() > 1e9)
    state.delete(f"{k}s", f"{k}h", f"{k}set", f"{k}l", f"{k}n")
    return out


def _error(call: Callable[[], Any]) -> tuple[type[BaseException], str]:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
        return type(exc), str(exc)
    raise AssertionError("no error")


@pytest.mark.timeout(120)
def test_a_workers_state_answers_and_fails_as_the_clients(server_url: str) -> None:
    direct = open_state(server_url, client_name="faasmp-test-direct", lean=True)
    client = open_state(server_url, client_name="faasmp-test-client")
    try:
        assert isinstance(direct, DirectState) and isinstance(client, RedisState)
        assert _session(direct) == _session(client)
        # An error reply keeps redis-py's type and message, on a command and in a pipeline.
        for state in (direct, client):
            state.rpush("fmp:cold-import:list", b"x")
        wrong_type = [_error(lambda s=s: s.get("fmp:cold-import:list")) for s in (direct, client)]
        assert wrong_type[0] == wrong_type[1] and wrong_type[0][0] is redis.exceptions.ResponseError
        piped = []
        for state in (direct, client):
            pipe = state.pipeline(transaction=True)
            pipe.get("fmp:cold-import:list")
            piped.append(_error(pipe.execute))
        assert piped[0] == piped[1] and "WRONGTYPE" in piped[0][1]
        direct.delete("fmp:cold-import:list")
        # Both still work on their connections, and counted their requests.
        assert direct.exists("fmp:cold-import:list") == client.exists("fmp:cold-import:list") == 0
        assert direct.statistics().round_trips > 0
    finally:
        direct.close()
        client.close()
    # A wrong password: the same StateError, naming redis-py's AuthenticationError and its message.
    scheme, rest = server_url.split("://", 1)
    credentials, where = rest.split("@", 1)
    user = credentials.split(":", 1)[0]
    bad_url = f"{scheme}://{user}:not-the-password@{where}"
    refused = []
    for lean in (True, False):
        state = open_state(bad_url, lean=lean)
        refused.append(_error(lambda st=state: st.get("fmp:cold-import:x")))
        state.close()
    assert refused[0] == refused[1], refused
    assert (
        refused[0][0] is StateError and "AuthenticationError: invalid username-password pair" in refused[0][1]
    )


@pytest.mark.timeout(60)
def test_a_workers_state_reports_a_closed_server_as_the_clients() -> None:
    server = EmbeddedServer.start()
    states = [open_state(server.url, lean=True), open_state(server.url)]
    assert [s.get("fmp:cold-import:x") for s in states] == [None, None]
    server.stop()
    errors = [_error(lambda st=s: st.get("fmp:cold-import:x")) for s in states]
    assert all(e[0] is StateError and "lost the connection to Redis" in e[1] for e in errors), errors
    # Reconnecting to the socket that is gone: redis-py's message, word for word.
    errors = [_error(lambda st=s: st.get("fmp:cold-import:x")) for s in states]
    assert errors[0] == errors[1] and "No such file or directory" in errors[0][1], errors
    for state in states:
        state.close()


@pytest.mark.timeout(60)
def test_a_workers_connection_is_ready_after_one_round_trip_and_checks_the_epoch(
    embedded_server: EmbeddedServer,
) -> None:
    epoch = "fmp:cold-import:epoch"
    admin = open_state(embedded_server.url)
    admin.set(epoch, b"1")
    state = open_state(embedded_server.url, client_name="faasmp-test-epoch", lean=True)
    state.watch_epoch(epoch)
    try:
        assert state.get(epoch) == b"1"
        # HELLO (password, name) and the epoch's EXISTS in one write, then the GET.
        assert state.statistics().round_trips == 2
        admin.delete(epoch)  # the run's state is gone, as after a restart without persistence
        state.direct.close()  # the next command connects again
        with pytest.raises(StateError, match="no longer holds this faasmp run's state"):
            state.get(epoch)
    finally:
        state.close()
        admin.close()


@pytest.mark.timeout(60)
def test_a_workers_state_subscribes_and_scans_through_redis_py_when_asked(
    embedded_server: EmbeddedServer,
) -> None:
    state = open_state(embedded_server.url, lean=True)
    try:
        state.set("fmp:cold-import:scan", b"1")
        sub = state.subscribe("fmp:cold-import:chan")
        state.publish("fmp:cold-import:chan", b"hello")
        got = None
        for _ in range(50):  # each get waits up to 0.1 s for the message
            got = sub.get_message(timeout=0.1)
            if got is not None:
                break
        sub.close()
        assert got is not None and got["data"] == b"hello"
        assert b"fmp:cold-import:scan" in set(state.scan_keys("fmp:cold-import:*"))
        # One verdict on a lost run for both paths of the state.
        state.mark_lost("a test says so")
        with pytest.raises(StateError, match="a test says so"):
            list(state.scan_keys("fmp:cold-import:*"))
        with pytest.raises(StateError, match="a test says so"):
            state.get("fmp:cold-import:scan")
    finally:
        state.close()
    admin = open_state(embedded_server.url)
    admin.delete("fmp:cold-import:scan")
    admin.close()
