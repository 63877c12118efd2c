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

#: Seconds a loaded 2-core machine may add to a documented detection latency.
DETECTION_MARGIN = 5.0
#: Seconds to wait for a re-run to show up: a warm worker starts a call in milliseconds.
RERUN_GRACE = 3.0


def _starts(marks) -> int:
    return len(list(marks.iterdir()))


def test_killed_invocation_fails_its_work_and_the_pool_recovers(tmp_path):
    """SIGKILL the whole host invocation (injected fault): no hang, new workers start."""
    ctx = FaasContext(**TEST_SETTINGS)
    try:
        ctx.start_warm_pool(2)
        session = ctx.session
        k = session.keys
        pool = ctx.Pool(2)
        proc = ctx.Process(target=helpers.record_start_then_sleep, args=(str(tmp_path),))
        proc.start()
        assert proc.pid
        result = pool.apply_async(helpers.sleep_forever)
        deadline = time.monotonic() + 30
        while _starts(tmp_path) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _starts(tmp_path) == 1, "the process never started"
        for host in session.state.smembers(k.hosts):
            pid = int(session.state.hget(k.k("host", host.decode()), "pid"))
            os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(WorkerLostError):
            result.get(30)
        pool_detected = time.monotonic() - t0
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL
        detected = time.monotonic() - t0
        print(f"killed invocation detected after {pool_detected:.1f} s (Pool), {detected:.1f} s (Process)")
        # docs/reliability.md: the host's heartbeat key expires 3 heartbeats (at least 6 s)
        # after its last beat; the pool's handler checks every heartbeat, a join every 3
        # (after its own wait); plus a margin for a loaded 2-core machine.
        hb = TEST_SETTINGS["heartbeat_interval"]
        ttl = max(3 * hb, 6.0)
        assert pool_detected < ttl + 2 * hb + DETECTION_MARGIN, pool_detected
        assert detected < ttl + 2 * 3 * hb + DETECTION_MARGIN, detected
        time.sleep(RERUN_GRACE)
        assert _starts(tmp_path) == 1, "the Process ran again after its invocation died (at-most-once)"
        pool.terminate()
        with ctx.Pool(2) as fresh:
            assert fresh.map(helpers.square, range(4)) == [0, 1, 4, 9]
    finally:
        ctx.shutdown()


def test_process_whose_worker_dies_is_never_rerun_unlike_a_pool_task(tmp_path):
    """A target that records each start and SIGKILLs its worker (injected fault).

    A Process is at-most-once: one start, exit code -SIGKILL.  The same target
    as a Pool task is at-least-once: run again ``task_retries`` (1) times, so
    it records two starts -- which shows this count would see a re-run.
    """
    proc_marks, task_marks = tmp_path / "process", tmp_path / "task"
    proc_marks.mkdir()
    task_marks.mkdir()
    ctx = FaasContext(task_retries=1, **TEST_SETTINGS)
    try:
        proc = ctx.Process(target=helpers.record_start_then_die, args=(str(proc_marks),))
        proc.start()
        proc.join(60)
        assert proc.exitcode == -signal.SIGKILL
        time.sleep(RERUN_GRACE)
        assert _starts(proc_marks) == 1, f"the Process started {_starts(proc_marks)} times"
        with ctx.Pool(1) as pool:
            with pytest.raises(WorkerLostError, match="tried 2 times"):
                pool.apply_async(helpers.record_start_then_die, (str(task_marks),)).get(60)
        assert _starts(task_marks) == 2
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


#: Put on the workers' PYTHONPATH as ``sitecustomize``: a slot that takes a Pool
#: lease SIGKILLs itself right after recording it, before it reports "started"
#: (injected fault: a worker that dies before ever starting).  Each death leaves a mark.
DIE_BEFORE_START = """
import os, signal, tempfile
marks = os.environ.get("FAASMP_TEST_DIE_BEFORE_START")
if marks:
    import faasmp.runtime.worker as worker
    from faasmp.runtime.protocol import ServingPool
    real = worker.write_record

    def write_record(record, value):
        real(record, value)
        if isinstance(value, ServingPool) and value.job is None:
            tempfile.NamedTemporaryFile(dir=marks, prefix="died-", delete=False).close()
            os.kill(os.getpid(), signal.SIGKILL)

    worker.write_record = write_record
"""


def test_workers_dying_before_start_break_the_pool_after_3_tries_injected_fault(tmp_path, monkeypatch):
    hook, marks = tmp_path / "hook", tmp_path / "marks"
    hook.mkdir()
    marks.mkdir()
    (hook / "sitecustomize.py").write_text(DIE_BEFORE_START)
    monkeypatch.setenv("FAASMP_TEST_DIE_BEFORE_START", str(marks))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    ctx = FaasContext(**TEST_SETTINGS)
    try:
        pool = ctx.Pool(1)
        pending = pool.apply_async(helpers.square, (3,))
        with pytest.raises(WorkerLostError, match=r"died 3 times before starting \(last: .*\)"):
            pending.get(60)  # without the breaker: re-leased forever, a TimeoutError here
        deaths = len(list(marks.iterdir()))
        assert deaths == 3, f"{deaths} workers died before starting; the pool should stop at 3"
        with pytest.raises(WorkerLostError, match="before starting"):
            pool.apply_async(helpers.square, (4,)).get(10)  # a broken pool refuses new work
        pool.terminate()
        time.sleep(1.0)
        assert len(list(marks.iterdir())) == 3, "workers were still leased after the pool broke"
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
ttl = float(sys.argv[2])
ctx = FaasContext(redis_url=sys.argv[1], idle_timeout=60.0, heartbeat_interval=0.5, key_ttl=ttl)
ctx.start_warm_pool(2)
q = ctx.Queue()
q.put("an item the dead client leaves behind")
s = ctx.session
hosts = [h.decode() for h in s.state.smembers(s.keys.hosts)]
pids = [int(s.state.hget(s.keys.k("host", h), "pid")) for h in hosts]
print(" ".join(map(str, pids)), s.keys.pattern, flush=True)
time.sleep(120)
"""


#: key_ttl of the client killed below (seconds): short, so its keys expire during the test.
KILLED_CLIENT_KEY_TTL = 8.0


def test_workers_of_a_killed_client_stop_and_its_keys_expire(external_server, tmp_path):
    """SIGKILL the client (injected fault): its invocations stop within a few heartbeats."""
    import subprocess
    import sys

    import redis

    child = subprocess.Popen(
        [sys.executable, "-c", CLIENT, external_server.url, str(KILLED_CLIENT_KEY_TTL)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert child.stdout is not None
    line = child.stdout.readline().split()
    host_pids, pattern = [int(p) for p in line[:-1]], line[-1]
    assert host_pids
    r = redis.Redis.from_url(external_server.url)
    before = list(r.scan_iter(match=pattern))
    # The run's keys exist (hosts, slots, the client's heartbeat, the queue's items)...
    assert len(before) >= 5 and any(b"client" in k for k in before), before
    assert any(r.type(k) == b"list" and r.llen(k) == 1 for k in before), "the queue's item is not there"
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    t0 = time.monotonic()
    deadline = t0 + 30
    alive = list(host_pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        time.sleep(0.1)
    stopped = time.monotonic() - t0
    assert not alive, f"worker invocations {alive} outlived their killed client"
    # ...every one carries a TTL, and they all expire: the client's heartbeat key
    # after 3 heartbeats (at least 6 s), the rest within key_ttl of their last
    # write (the hosts write until they stop).
    leftover = [k for k in r.scan_iter(match=pattern) if r.ttl(k) == -1]
    assert leftover == [], f"keys without a TTL left by a killed client: {leftover[:5]}"
    deadline = time.monotonic() + KILLED_CLIENT_KEY_TTL + DETECTION_MARGIN
    while (left := list(r.scan_iter(match=pattern))) and time.monotonic() < deadline:
        time.sleep(0.2)
    gone = time.monotonic() - t0
    print(f"killed client: workers stopped after {stopped:.1f} s, its keys expired after {gone:.1f} s")
    assert left == [], f"keys of a killed client still there {gone:.0f} s later: {left[:5]}"
    # The hosts watch the client's heartbeat key (TTL 3 heartbeats, at least 6 s) every heartbeat.
    assert stopped < max(3 * 0.5, 6.0) + 2 * 0.5 + DETECTION_MARGIN, stopped


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


#: Put on the workers' PYTHONPATH as ``sitecustomize``: a worker interpreter
#: sleeps before it imports anything of faasmp (injected fault: a host that is
#: slow to start, as on an overloaded machine).
SLOW_START = """
import os, time
delay = os.environ.get("FAASMP_TEST_SLOW_START")
if delay:
    time.sleep(float(delay))
"""


def test_a_warm_pool_that_does_not_start_in_time_says_where_it_stands_injected_fault(tmp_path, monkeypatch):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_START)
    monkeypatch.setenv("FAASMP_TEST_SLOW_START", "20")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    ctx = FaasContext(**TEST_SETTINGS)
    try:
        t0 = time.monotonic()
        with pytest.raises(faasmp.WorkerStartError) as err:
            ctx.start_warm_pool(2, timeout=2)
        assert time.monotonic() - t0 < 15
        message = str(err.value)
        assert "2 warm workers did not start within 2s: 0 of 2 registered" in message
        assert "has not registered: still queued or starting in backend 'localhost'" in message
    finally:
        ctx.shutdown()


def test_fake_compute_backend_that_never_starts_fails_within_start_timeout(monkeypatch):
    """Injected fault: making the Lithops executor never returns (a cloud endpoint that never answers).

    Everything that starts a worker waited for it without a limit; now the
    first Process or Pool fails with WorkerStartError after start_timeout.
    """
    import threading

    from faasmp.runtime import session as session_mod
    from faasmp.runtime.session import WorkerStartError

    release = threading.Event()

    def hanging_open_compute(config):
        release.wait(60)
        raise RuntimeError("released by the test")

    monkeypatch.setattr(session_mod, "open_compute", hanging_open_compute)
    ctx = FaasContext(**{**TEST_SETTINGS, "start_timeout": 1.0})
    try:
        t0 = time.monotonic()
        with pytest.raises(WorkerStartError, match=r"did not start within 1 s"):
            p = ctx.Process(target=abs, args=(-1,))
            p.start()
            p.join(30)
        assert time.monotonic() - t0 < 20
    finally:
        release.set()
        ctx.shutdown()
