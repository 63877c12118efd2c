"""Faults a real deployment meets: a worker invocation killed, one that never starts."""

from __future__ import annotations

import os
import signal
import time

import pytest

import faasmp
from faasmp.context import FaasContext
from faasmp.pool import WorkerLostError
from tests import helpers
from tests.conftest import TEST_SETTINGS


def test_killed_invocation_fails_its_work_and_the_pool_recovers():
    """SIGKILL the whole host invocation (injected fault): no hang, new workers start."""
    ctx = FaasContext(**TEST_SETTINGS)
    try:
        ctx.start_warm_pool(2)
        session = ctx.session
        k = session.keys
        pool = ctx.Pool(2)
        proc = ctx.Process(target=helpers.sleep_forever)
        proc.start()
        assert proc.pid
        result = pool.apply_async(helpers.sleep_forever)
        time.sleep(0.5)
        for host in session.state.smembers(k.hosts):
            pid = int(session.state.hget(k.k("host", host.decode()), "pid"))
            os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(WorkerLostError):
            result.get(30)
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL
        assert time.monotonic() - t0 < 30
        pool.terminate()
        with ctx.Pool(2) as fresh:
            assert fresh.map(helpers.square, range(4)) == [0, 1, 4, 9]
    finally:
        ctx.shutdown()


def test_invocation_that_cannot_start_is_reported_not_hung():
    """A broken runtime (injected: an interpreter path that does not exist)."""
    ctx = FaasContext(lithops_config={"localhost": {"runtime": "/nonexistent/python3"}}, **TEST_SETTINGS)
    try:
        t0 = time.monotonic()
        with pytest.raises(faasmp.WorkerStartError, match="nonexistent/python3"):
            with ctx.Pool(1) as p:
                p.apply(helpers.square, (2,))
        assert time.monotonic() - t0 < 60
    finally:
        ctx.shutdown()


def test_work_scope_cancel_stops_its_work_and_keeps_the_pool_warm(ctx):
    from faasmp.pool import PoolTerminated

    with ctx.work_scope() as scope:
        pool = ctx.Pool(1)
        pending = pool.apply_async(helpers.sleep_forever)
        proc = ctx.Process(target=helpers.sleep_forever)
        proc.start()
        assert proc.pid
    assert scope.pools == [pool] and scope.processes == [proc]
    assert scope.cancel() == 2
    with pytest.raises(PoolTerminated):
        pending.get(10)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    with ctx.Pool(1) as p:
        assert p.apply(helpers.square, (5,)) == 25


def test_output_handler_receives_remote_output(ctx):
    got = []
    ctx.output_handler = got.append
    try:
        with ctx.Pool(1) as p:
            p.apply(helpers.print_lines, (1, "routed"))
    finally:
        ctx.output_handler = None
    assert ("w", got[0][1], 1, "routed 0\n") in got
    with pytest.raises(TypeError):
        ctx.output_handler = 3


CLIENT = """
import sys, time
from faasmp.context import FaasContext
ctx = FaasContext(redis_url=sys.argv[1], idle_timeout=60.0, heartbeat_interval=0.5)
ctx.start_warm_pool(2)
s = ctx.session
hosts = [h.decode() for h in s.state.smembers(s.keys.hosts)]
pids = [int(s.state.hget(s.keys.k("host", h), "pid")) for h in hosts]
print(" ".join(map(str, pids)), s.keys.pattern, flush=True)
time.sleep(120)
"""


def test_workers_of_a_killed_client_stop_and_its_keys_expire(external_server, tmp_path):
    """SIGKILL the client (injected fault): its invocations stop within a few heartbeats."""
    import subprocess
    import sys

    import redis

    child = subprocess.Popen(
        [sys.executable, "-c", CLIENT, external_server.url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert child.stdout is not None
    line = child.stdout.readline().split()
    host_pids, pattern = [int(p) for p in line[:-1]], line[-1]
    assert host_pids
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    deadline = time.monotonic() + 30
    alive = list(host_pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        time.sleep(0.1)
    assert not alive, f"worker invocations {alive} outlived their killed client"
    r = redis.Redis.from_url(external_server.url)
    leftover = [k for k in r.scan_iter(match=pattern) if r.ttl(k) == -1]
    assert leftover == [], f"keys without a TTL left by a killed client: {leftover[:5]}"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_process_whose_host_died_exits_once_and_ends_its_output():
    """SIGKILL the host of a running Process (injected fault): the client records the exit.

    It records it as every other exit is recorded (one transition,
    backends/redis/processes.py): the exit code, a publish on the exit
    channel and the end-of-output marker that ``join`` waits for.  Before,
    the client's own path wrote no marker, and ``join`` waited 2 s for output
    that would never come.
    """
    ctx = FaasContext(**TEST_SETTINGS)
    try:
        session = ctx.session
        k = session.keys
        proc = ctx.Process(target=helpers.sleep_forever)
        proc.start()
        assert proc.pid
        proc_id = proc._proc_id
        host = session.state.hget(k.proc(proc_id), "host").decode()
        os.kill(int(session.state.hget(k.k("host", host), "pid")), signal.SIGKILL)
        assert proc._handle.wait(60) == -signal.SIGKILL
        with session._eof_lock:
            ended = session._eof_lock.wait_for(lambda: proc_id in session._eof, timeout=30)
        assert ended, "no end-of-output marker for a process whose host died"
        record = session.state.hgetall(k.proc(proc_id))
        assert record[b"state"] == b"exited" and record[b"lost"] == b"worker invocation died"
        assert session.state.lrange(k.proc_exit(proc_id), 0, -1) == [str(-signal.SIGKILL).encode()]
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL
    finally:
        ctx.shutdown()
