"""Locks, semaphores, conditions, events and barriers: stdlib semantics, locally and remotely."""

from __future__ import annotations

import functools
import pickle
import queue
import threading
import time

import cloudpickle
import pytest

from faasmp import synchronize
from tests import helpers_sync
from tests.conftest import skip_if_isolated


def run_processes(ctx, target, arglists, timeout=60.0):
    procs = [ctx.Process(target=target, args=args) for args in arglists]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    return [p.exitcode for p in procs]


# --- Lock / RLock -------------------------------------------------------------------


def test_lock_acquire_release_and_repr(ctx):
    lock = ctx.Lock()
    assert repr(lock) == "<Lock(owner=None)>"
    assert lock.acquire()
    assert repr(lock) == "<Lock(owner=MainProcess)>"
    assert lock.acquire(False) is False
    assert lock.acquire(block=False, timeout=5) is False  # timeout ignored when not blocking
    lock.release()
    with lock as got:
        assert got is True
        assert lock.acquire(timeout=0) is False
    assert repr(lock) == "<Lock(owner=None)>"


def test_lock_over_release_is_value_error(ctx):
    lock = ctx.Lock()
    with pytest.raises(ValueError, match="semaphore or lock released too many times"):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()


def test_lock_timeout_returns_false_promptly(ctx):
    lock = ctx.Lock()
    lock.acquire()
    t0 = time.monotonic()
    assert lock.acquire(timeout=0.3) is False
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 10  # a bound against hangs, not a timing check
    t0 = time.monotonic()
    assert lock.acquire(timeout=-1) is False  # negative = do not wait, as the stdlib
    assert time.monotonic() - t0 < 10
    lock.release()


def test_lock_released_by_another_thread_wakes_a_waiter(ctx):
    lock = ctx.Lock()
    lock.acquire()
    got = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=10)))
    t.start()
    time.sleep(0.2)
    assert got == []
    lock.release()  # a multiprocessing.Lock may be released by anyone
    t.join(10)
    assert got == [True]
    assert "Thread" in repr(lock) or "SomeOther" in repr(lock)  # held by the thread now
    lock.release()


def test_rlock_recursion_owner_and_foreign_release(ctx):
    rlock = ctx.RLock()
    assert repr(rlock) == "<RLock(None, 0)>"
    assert rlock.acquire()
    assert rlock.acquire()
    assert repr(rlock) == "<RLock(MainProcess, 2)>"
    errors = []

    def other_thread():
        try:
            rlock.release()
        except AssertionError as exc:
            errors.append(str(exc))
        errors.append(rlock.acquire(timeout=0.1))

    t = threading.Thread(target=other_thread)
    t.start()
    t.join(10)
    assert errors == ["attempt to release recursive lock not owned by thread", False]
    rlock.release()
    assert repr(rlock) == "<RLock(MainProcess, 1)>"
    rlock.release()
    with pytest.raises(AssertionError, match="not owned by thread"):
        rlock.release()


def test_lock_mutual_exclusion_between_threads(ctx):
    lock = ctx.Lock()
    counter = ctx.RawValue("i", 0)

    def work():
        for _ in range(25):
            with lock:
                counter.value = counter.value + 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert counter.value == 150


def test_lock_mutual_exclusion_across_remote_processes(ctx):
    lock = ctx.Lock()
    workers, rounds = 3, 8
    log = ctx.RawArray("i", workers * rounds * 2)
    pos = ctx.RawValue("i", 0)
    codes = run_processes(
        ctx, helpers_sync.log_critical_sections, [(lock, log, pos, w, rounds) for w in range(1, workers + 1)]
    )
    assert codes == [0] * workers
    assert pos.value == workers * rounds * 2
    entries = log[:]
    pairs = list(zip(entries[::2], entries[1::2], strict=True))
    # every critical section is a start immediately followed by its own end
    assert all(end == start + 1 and start % 10 == 1 for start, end in pairs), entries
    assert sorted(start // 10 for start, _ in pairs) == sorted(list(range(1, workers + 1)) * rounds)


def test_lock_held_by_a_dead_process_stays_locked(ctx):
    lock = ctx.Lock()
    assert run_processes(ctx, helpers_sync.acquire_and_exit, [(lock,)]) == [0]
    assert lock.acquire(timeout=0.2) is False  # as the stdlib: nobody releases it
    assert "Process-" in repr(lock)  # and repr names the (dead) owner
    lock.release()  # a Lock may still be released by anyone
    assert lock.acquire(timeout=1)


def test_remote_process_cannot_release_a_client_rlock_but_can_release_a_lock(ctx):
    rlock, lock = ctx.RLock(), ctx.Lock()
    rlock.acquire()
    lock.acquire()
    codes = run_processes(ctx, helpers_sync.release_foreign, [(rlock,), (lock,), (ctx.Lock(),)])
    assert codes == [3, 0, 4]  # AssertionError, released, ValueError (not locked)
    assert lock.acquire(timeout=1)
    assert rlock.acquire(timeout=1)  # still ours, recursively


def test_remote_waiter_gets_the_lock_when_the_client_releases(ctx):
    lock = ctx.Lock()
    lock.acquire()
    p = ctx.Process(target=helpers_sync.try_acquire, args=(lock, 30))
    p.start()
    time.sleep(1.0)
    lock.release()
    p.join(60)
    assert p.exitcode == 0
    assert lock.acquire(timeout=0.1) is False  # the remote process died holding it


# --- Semaphore / BoundedSemaphore -------------------------------------------------------


def test_semaphore_value_and_repr(ctx):
    sem = ctx.Semaphore(3)
    assert sem.get_value() == 3
    assert repr(sem) == "<Semaphore(value=3)>"
    assert sem.acquire() and sem.acquire(False)
    assert sem.get_value() == 1
    sem.release()
    sem.release()
    sem.release()  # an unbounded semaphore may rise above its initial value
    assert sem.get_value() == 4
    zero = ctx.Semaphore(0)
    assert zero.acquire(timeout=0.1) is False
    with pytest.raises(ValueError, match=">= 0"):
        ctx.Semaphore(-1)


def test_bounded_semaphore_over_release(ctx):
    sem = ctx.BoundedSemaphore(2)
    assert repr(sem) == "<BoundedSemaphore(value=2, maxvalue=2)>"
    with pytest.raises(ValueError, match="released too many times"):
        sem.release()
    sem.acquire()
    sem.release()
    assert sem.get_value() == 2


def _waiters(sem):
    """The number of registered, unserved waiters of a semaphore (read from Redis)."""
    return int(sem._session.state.hget(sem.key("m"), "w") or 0)


def test_huge_bounded_semaphore_takes_constant_memory(ctx):
    skip_if_isolated(ctx, "the test sends MEMORY USAGE, which faasmp's ACL user may not (faasmp never does)")
    # The stdlib's queues.Queue makes BoundedSemaphore(2**31 - 1) on any context:
    # the value is a count, not one Redis element per unit.
    sem = ctx.BoundedSemaphore(synchronize.SEM_VALUE_MAX)
    redis_client = ctx.session.state._r  # the test inspects Redis directly
    assert sum(redis_client.memory_usage(k) or 0 for k in (sem.key("m"), sem.key("t"))) < 1024
    assert sem.get_value() == synchronize.SEM_VALUE_MAX
    assert sem.acquire(timeout=1)
    assert sem.get_value() == synchronize.SEM_VALUE_MAX - 1
    sem.release()
    with pytest.raises(ValueError, match="released too many times"):
        sem.release()
    with pytest.raises(ValueError, match="<= 2147483647"):
        ctx.Semaphore(synchronize.SEM_VALUE_MAX + 1)


def test_stdlib_queue_on_a_faasmp_context(ctx):
    import multiprocessing.queues  # noqa: PLC0415

    q = multiprocessing.queues.Queue(ctx=ctx)  # BoundedSemaphore(2**31 - 1) + Lock from ctx
    q.put([1, 2])
    assert q.get(timeout=10) == [1, 2]
    bounded = multiprocessing.queues.Queue(1, ctx=ctx)
    bounded.put(1)
    with pytest.raises(queue.Full):
        bounded.put(2, timeout=0.1)
    assert bounded.get(timeout=10) == 1
    for x in (q, bounded):
        x.close()
        x.join_thread()


def test_timed_out_waiters_unregister_and_lose_no_release(ctx):
    sem = ctx.Semaphore(0)
    results = []
    threads = [threading.Thread(target=lambda: results.append(sem.acquire(timeout=0.3))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [False] * 3
    assert _waiters(sem) == 0
    sem.release()  # counted, not handed to a waiter that is gone
    assert sem.get_value() == 1
    assert sem.acquire(False) is True
    assert sem.acquire(timeout=0) is False and _waiters(sem) == 0


def test_release_hands_units_to_blocked_waiters_first_come_first_served(ctx):
    sem = ctx.Semaphore(0)
    order = []

    def wait(i):
        assert sem.acquire(timeout=30)
        order.append(i)

    threads = []
    for i in range(3):
        threads.append(threading.Thread(target=wait, args=(i,)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while _waiters(sem) < i + 1 and time.monotonic() < deadline:  # the test waits, not the code
            time.sleep(0.01)
    assert _waiters(sem) == 3
    for i in range(3):
        sem.release()
        threads[i].join(10)
        assert not threads[i].is_alive()
    assert order == [0, 1, 2]
    assert sem.get_value() == 0 and _waiters(sem) == 0


def test_a_unit_handed_to_a_killed_waiter_is_not_lost(ctx):
    lock = ctx.Lock()
    lock.acquire()
    p = ctx.Process(target=helpers_sync.try_acquire, args=(lock, 60))
    p.start()
    deadline = time.monotonic() + 60
    while _waiters(lock) < 1 and time.monotonic() < deadline:  # the test waits, not the code
        time.sleep(0.02)
    assert _waiters(lock) == 1
    p.terminate()
    p.join(30)
    lock.release()  # handed to the dead waiter's wake list...
    assert lock.acquire(timeout=5) is True  # ...and taken by the next acquirer
    assert _waiters(lock) == 1  # the dead waiter still counts (its next unit is taken the same way)
    lock.release()
    assert lock.acquire(False) is True


def test_semaphore_limits_concurrency_of_remote_processes(ctx):
    sem = ctx.Semaphore(2)
    guard = ctx.Lock()
    current, peak = ctx.RawValue("i", 0), ctx.RawValue("i", 0)
    codes = run_processes(ctx, helpers_sync.hold_semaphore, [(sem, guard, current, peak, 0.4)] * 4)
    assert codes == [0] * 4
    assert 1 <= peak.value <= 2
    assert current.value == 0
    assert sem.get_value() == 2


def test_semaphore_limits_concurrency_of_threads_exactly(ctx):
    sem = ctx.Semaphore(2)
    guard = threading.Lock()
    current = peak = 0
    start = threading.Barrier(5)

    def work():
        nonlocal current, peak
        start.wait()
        with sem:
            with guard:
                current += 1
                peak = max(peak, current)
            time.sleep(0.2)
            with guard:
                current -= 1

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak == 2


# --- Condition ------------------------------------------------------------------------------


def test_condition_requires_the_lock(ctx):
    cond = ctx.Condition()
    with pytest.raises(AssertionError, match=r"must acquire\(\) condition before using wait\(\)"):
        cond.wait(0.1)
    with pytest.raises(AssertionError, match="lock is not owned"):
        cond.notify()
    with pytest.raises(TypeError, match="faasmp Lock or RLock"):
        ctx.Condition(threading.Lock())
    assert repr(cond) == "<Condition(<RLock(None, 0)>, 0)>"


def test_condition_wait_timeout_restores_recursion(ctx):
    cond = ctx.Condition()
    with cond, cond:  # recursion level 2
        t0 = time.monotonic()
        assert cond.wait(0.3) is False
        assert 0.25 <= time.monotonic() - t0 < 10
        assert repr(cond._lock) == "<RLock(MainProcess, 2)>"
        assert cond.wait(0) is False
    assert repr(cond._lock) == "<RLock(None, 0)>"


def test_condition_notify_and_notify_all_with_threads(ctx):
    cond = ctx.Condition(ctx.Lock())
    woken = []

    def waiter(i):
        with cond:
            if cond.wait(20):
                woken.append(i)

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while "4)>" not in repr(cond) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert repr(cond).endswith(", 4)>")
    # CPython's private counters, which its own tests read
    assert cond._sleeping_count.get_value() - cond._woken_count.get_value() == 4
    with cond:
        cond.notify()
    time.sleep(0.3)
    assert len(woken) == 1
    assert cond._sleeping_count.get_value() == 3
    with cond:
        cond.notify(2)
    time.sleep(0.3)
    assert len(woken) == 3
    with cond:
        cond.notify_all()
    for t in threads:
        t.join(20)
    assert sorted(woken) == [0, 1, 2, 3]
    assert cond._sleeping_count.get_value() == 0 and cond._wait_semaphore.get_value() == 0


def test_condition_wait_for_notified_from_a_remote_process(ctx):
    cond = ctx.Condition()
    flag = ctx.RawValue("i", 0)
    p = ctx.Process(target=helpers_sync.notify_after, args=(cond, flag, 0.5))
    with cond:
        p.start()
        assert cond.wait_for(lambda: flag.value == 1, timeout=30) is True
    p.join(30)
    assert p.exitcode == 0
    with cond:
        t0 = time.monotonic()
        assert cond.wait_for(lambda: flag.value == 2, timeout=0.3) is False
        assert time.monotonic() - t0 < 10


# --- Event --------------------------------------------------------------------------------------


def test_event_set_clear_wait(ctx):
    ev = ctx.Event()
    assert not ev.is_set()
    assert "unset>" in repr(ev)
    t0 = time.monotonic()
    assert ev.wait(0.3) is False
    assert 0.25 <= time.monotonic() - t0 < 10
    assert ev.wait(0) is False
    ev.set()
    ev.set()
    assert ev.is_set() and ev.wait() and ev.wait(0)
    assert " set>" in repr(ev)
    ev.clear()
    assert not ev.is_set()


def test_event_set_wakes_every_waiting_thread(ctx):
    ev = ctx.Event()
    results = []
    threads = [threading.Thread(target=lambda: results.append(ev.wait(20))) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    ev.set()
    for t in threads:
        t.join(20)
    assert results == [True] * 5


def test_event_set_by_a_remote_process_wakes_the_client(ctx):
    ev = ctx.Event()
    p = ctx.Process(target=helpers_sync.set_event_after, args=(ev, 0.5))
    p.start()
    assert ev.wait(30) is True
    p.join(30)
    assert p.exitcode == 0


# --- Barrier ----------------------------------------------------------------------------------------


def test_barrier_with_two_remote_processes_and_the_client(ctx):
    runs = ctx.RawValue("i", 0)
    barrier = ctx.Barrier(3, action=functools.partial(helpers_sync.mark, runs))
    indices = ctx.RawArray("i", [-1, -1])
    procs = [ctx.Process(target=helpers_sync.barrier_wait, args=(barrier, i, indices)) for i in range(2)]
    for p in procs:
        p.start()
    mine = barrier.wait(30)
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted([mine, *indices[:]]) == [0, 1, 2]
    assert runs.value == 1  # the action ran in exactly one party
    assert barrier.n_waiting == 0 and not barrier.broken


def test_barrier_reuse_action_and_properties_with_threads(ctx):
    runs = []
    barrier = ctx.Barrier(3, action=lambda: runs.append(1))
    assert barrier.parties == 3 and barrier.n_waiting == 0
    assert "waiters=0/3" in repr(barrier)
    results = []

    def party():
        for _ in range(3):
            results.append(barrier.wait(20))

    threads = [threading.Thread(target=party) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len(runs) == 3


def test_barrier_timeout_breaks_it_and_reset_repairs_it(ctx):
    barrier = ctx.Barrier(2)
    t0 = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(0.3)
    assert time.monotonic() - t0 < 10
    assert barrier.broken and barrier.n_waiting == 0
    assert repr(barrier).endswith(": broken>")
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(5)  # stays broken
    barrier.reset()
    assert not barrier.broken
    default_timeout = ctx.Barrier(2, timeout=0.2)
    with pytest.raises(threading.BrokenBarrierError):
        default_timeout.wait()


def test_barrier_abort_and_failing_action(ctx):
    barrier = ctx.Barrier(2)
    errors = []

    def party():
        try:
            barrier.wait(20)
        except threading.BrokenBarrierError:
            errors.append("broken")

    t = threading.Thread(target=party)
    t.start()
    time.sleep(0.3)
    assert barrier.n_waiting == 1
    barrier.abort()
    t.join(20)
    assert errors == ["broken"]

    def boom():
        raise ZeroDivisionError("action failed")

    failing = ctx.Barrier(2, action=boom)
    t = threading.Thread(target=lambda: errors.append(_wait_or_broken(failing)))
    t.start()
    time.sleep(0.2)
    with pytest.raises(ZeroDivisionError, match="action failed"):
        failing.wait(20)
    t.join(20)
    assert errors == ["broken", "broken"]
    assert failing.broken
    with pytest.raises(ValueError, match="parties"):
        ctx.Barrier(0)


def _wait_or_broken(barrier):
    try:
        return barrier.wait(20)
    except threading.BrokenBarrierError:
        return "broken"


# --- pickling and lifetime ------------------------------------------------------------------------


@pytest.mark.parametrize("factory", ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Event", "Condition"])
def test_copies_share_state(ctx, factory):
    obj = getattr(ctx, factory)()
    copy = pickle.loads(cloudpickle.dumps(obj))
    assert type(copy) is type(obj)
    if factory == "Event":
        obj.set()
        assert copy.is_set()
    elif factory == "Condition":
        with obj, copy:  # the same RLock, owned by this thread: recursion level 2
            assert repr(copy._lock) == "<RLock(MainProcess, 2)>"
        assert repr(obj._lock) == "<RLock(None, 0)>"
    else:
        assert obj.acquire()
        assert copy.acquire(False) is (factory == "RLock")  # same thread owns an RLock


def test_released_object_gives_a_clear_error_not_a_hang(ctx):
    lock = ctx.Lock()
    copy = pickle.loads(cloudpickle.dumps(lock))
    lock._release()  # what garbage collection of the owner does
    with pytest.raises(RuntimeError, match="state in Redis is gone"):
        copy.acquire(timeout=5)
    ev = ctx.Event()
    ev._release()
    with pytest.raises(RuntimeError, match="gone"):
        ev.wait(5)
    assert "unknown" in repr(ev)


def test_owner_ids_differ_per_thread_and_after_fork():
    ids = {synchronize._IDENTITY.current()}
    t = threading.Thread(target=lambda: ids.add(synchronize._IDENTITY.current()))
    t.start()
    t.join()
    assert len(ids) == 2
    token = synchronize._IDENTITY.token
    import os  # noqa: PLC0415

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.write(w, synchronize._IDENTITY.token.encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 64).decode() != token


def test_keys_carry_a_ttl_and_the_owner_deletes_them(ctx):
    import gc  # noqa: PLC0415

    lock, sem, ev, cond, barrier = ctx.RLock(), ctx.Semaphore(2), ctx.Event(), ctx.Condition(), ctx.Barrier(1)
    lock.acquire()
    sem.acquire()
    ev.set()
    with cond:
        cond.wait(0.01)
    assert barrier.wait(5) == 0
    objs = [lock, sem, ev, cond, cond._lock, barrier]
    redis_client = ctx.session.state._r  # the test inspects Redis directly
    keys = [k for o in objs for k in ctx.session.state.scan_keys(o.key() + "*")]
    assert len(keys) >= 6
    ttl_ms = ctx.config.key_ttl * 1000
    assert all(0 < redis_client.pttl(k) <= ttl_ms for k in keys)
    prefixes = [o.key() for o in objs]
    del lock, sem, ev, cond, barrier, objs
    gc.collect()
    left = [k for p in prefixes for k in ctx.session.state.scan_keys(p + "*")]
    assert left == []


def test_a_lock_in_constant_use_renews_its_ttl(ctx):
    """Acquire and release renew the TTL every key_ttl/10 s (not per call): a used lock never expires.

    The lock's TTL is shortened to 0.4 s (test-only, through its Redis state)
    and it is used for three times that long.
    """
    lock = ctx.Lock()
    sem = lock._redis
    sem._ttl = 400  # ms: renewed every 0.04 s from now on
    sem._fresh_until = 0.0
    ctx.session.state._r.pexpire(sem.meta, 400)  # the test inspects Redis directly
    deadline = time.monotonic() + 1.2
    cycles = 0
    while time.monotonic() < deadline:
        lock.acquire()
        lock.release()
        cycles += 1
    assert cycles > 10
    assert 0 < ctx.session.state._r.pttl(sem.meta) <= 400


def test_a_lock_released_once_too_often_says_so(ctx):
    """A lock's over-release check is its blank owner (a release leaves the owner fields empty)."""
    lock = ctx.Lock()
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()
    assert lock.acquire(timeout=5)  # the failed releases changed nothing
    assert not lock.acquire(block=False)
    lock.release()


def test_module_level_constructors_use_the_default_context(default_ctx):
    import faasmp  # noqa: PLC0415
    from faasmp import sharedctypes  # noqa: PLC0415

    lock = synchronize.Lock()
    assert lock._ctx is default_ctx
    with lock:
        assert lock.acquire(False) is False
    v = sharedctypes.Value("i", 41)
    with v.get_lock():
        v.value += 1
    assert v.value == 42 and v.get_lock()._ctx is default_ctx
    assert faasmp.Semaphore(2).get_value() == 2


# --- the shared-memory pull and push ride in the lock's own write (issue 16) ----------


def test_a_locked_increment_writes_twice_and_sees_every_other_process_increment(dsm_ctx):
    """Acquire carries the pull, release the push: two writes to Redis per increment."""
    ctx = dsm_ctx  # the DSM's pull and push (host shared memory has neither)
    v = ctx.Value("i", 0)
    lock = v.get_lock()
    with lock:
        v.value += 1  # warm: scripts loaded, the value's local copy attached
    state = ctx.session.state
    writes = []
    for _ in range(5):  # the fewest of 5: a background heartbeat may write meanwhile
        before = state.statistics().round_trips
        with lock:
            v.value += 1
        state.direct.flush()
        writes.append(state.statistics().round_trips - before)
    assert min(writes) == 2, writes
    assert run_processes(ctx, helpers_sync.increment, [(v, 50), (v, 50)]) == [0, 0]
    with lock:
        assert v.value == 106


def test_a_lock_taken_with_a_pull_that_fails_is_given_back_fake_pull_fault(ctx):
    """A pull that raises after the lock's script took the unit must not leave the lock held."""
    lock = ctx.Lock()
    sem = lock._redis

    def failing_pull() -> None:
        raise RuntimeError("injected pull fault")

    with pytest.raises(RuntimeError, match="injected pull fault"):
        sem.sem_try_then("me", "", failing_pull, recursive=False, track_owner=True, count=1, register=False)
    assert lock.acquire(timeout=2), "the unit the failed acquire took was not given back"
    lock.release()


def test_an_rlock_handed_to_a_blocked_waiter_is_owned_by_it_after_one_wait(ctx):
    """The waiter records itself as owner in its wait's round trip (BLMOVE + claim script)."""
    lock = ctx.RLock()
    held, go = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            go.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(10)
    timer = threading.Timer(0.3, go.set)
    timer.start()
    assert lock.acquire(timeout=20)  # blocks until the holder releases
    assert repr(lock) == "<RLock(MainProcess, 1)>"
    lock.release()  # raises "not owned" if the owner was not recorded
    t.join(10)
    timer.cancel()
    assert lock.acquire(False)
    lock.release()
