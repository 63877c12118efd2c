"""A release of a lock this thread holds is written without waiting for its reply (issue 16).

Its reply is read by the thread's next command, in that command's round trip:
an acquire+release cycle waits once.  Redis runs the release as soon as it is
written (a waiter elsewhere wakes then); a release the client cannot prove
valid stays synchronous, so the stdlib's errors come at the call; an error a
deferred reply turns out to be is raised by the next command.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from faasmp.context import FaasContext
from tests import helpers_sync
from tests.conftest import skip_if_isolated


def _waits(ctx: FaasContext) -> int:
    return int(ctx.session.state.statistics().waits)


def _writes(ctx: FaasContext) -> int:
    return int(ctx.session.state.statistics().round_trips)


def _in_thread(fn):  # type: ignore[no-untyped-def]
    """Run *fn* in another thread; return what it raised (or None)."""
    out: list[BaseException | None] = [None]

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out[0] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert not t.is_alive()
    return out[0]


@pytest.mark.parametrize("factory", ["Lock", "RLock", "Semaphore", "BoundedSemaphore"])
def test_a_release_of_what_this_thread_holds_waits_for_no_reply(ctx, factory):
    lock = getattr(ctx, factory)()
    for _ in range(2):  # warm: scripts loaded
        lock.acquire()
        lock.release()
    ctx.session.state.direct.flush()
    cycles = []
    for _ in range(5):  # the fewest of 5: a background heartbeat may read meanwhile
        lock.acquire()
        w0, r0 = _waits(ctx), _writes(ctx)
        lock.release()
        release = (_writes(ctx) - r0, _waits(ctx) - w0)
        lock.acquire()  # reads the release's reply in its own round trip
        cycle = _waits(ctx) - w0
        lock.release()
        cycles.append((*release, cycle))
    assert min(cycles) == (1, 0, 1), (
        f"(release writes, release waits, waits up to the next acquire): {cycles}"
    )
    ctx.session.state.direct.flush()
    assert lock.acquire(timeout=5)  # the releases all ran
    lock.release()


def test_a_deferred_release_wakes_a_waiter_without_the_releaser_doing_anything_else(ctx, tmp_path):
    """The releaser sleeps after its release; the remote waiter must get the lock meanwhile."""
    skip_if_isolated(ctx, "the remote process signals through a local file")
    lock = ctx.Lock()
    ready, done = tmp_path / "ready", tmp_path / "done"
    lock.acquire()
    lock.release()  # warm: a first call in a process waits (it may load the script)
    assert lock.acquire()
    p = ctx.Process(target=helpers_sync.take_lock_and_touch, args=(lock, str(ready), str(done)))
    p.start()
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists(), "the waiter never started"
    time.sleep(0.2)  # let it block in Redis (if not yet, it finds the lock free)
    lock.release()
    assert ctx.session.state.direct.pending(), "the release waited for its reply"
    # No Redis command from this thread from here on until the waiter is done.
    deadline = time.monotonic() + 20
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert done.exists(), "the waiter did not get the lock while the releaser slept after its release"
    # This thread did nothing on its connection since: the release's reply is still unread.
    assert ctx.session.state.direct.pending()
    p.join(60)
    assert p.exitcode == 0


def _faults(ctx: FaasContext) -> redis.Redis:
    """A separate client that changes a lock's state behind this process's back (the injected fault)."""
    return redis.Redis.from_url(ctx.session.url)


def test_a_deferred_release_that_fails_raises_at_the_next_command_fake_state_loss_fault(ctx):
    lock = ctx.Lock()
    lock.acquire()
    lock.release()
    lock.acquire()
    meta = lock._redis.meta
    r = _faults(ctx)
    try:
        r.delete(meta)  # the state is lost while this thread holds the lock
    finally:
        r.close()
    lock.release()  # written; the reply says "gone" but is not read yet
    with pytest.raises(
        RuntimeError, match=r"a release\(\) whose reply was read .* its state in Redis is gone"
    ):
        ctx.session.state.direct.execute("PING")
    assert ctx.session.state.direct.execute("PING") in (b"PONG", "PONG", True)  # raised once


def test_a_deferred_release_refused_raises_value_error_at_a_flush_fake_foreign_release_fault(ctx):
    """Another process released this Lock meanwhile (simulated): the late ValueError is not dropped."""
    lock = ctx.Lock()
    lock.acquire()
    lock.release()  # warm: a first call in a process waits (it may load the script)
    lock.acquire()
    r = _faults(ctx)
    try:
        r.hset(lock._redis.meta, mapping={"v": 1, "id": "", "name": "", "count": ""})
    finally:
        r.close()
    lock.release()
    with pytest.raises(ValueError, match=r"Lock .*a release\(\) whose reply .* released too many times"):
        ctx.session.state.direct.flush()


def test_invalid_releases_still_raise_the_stdlib_errors_at_the_call(ctx):
    # A Lock never acquired.
    lock = ctx.Lock()
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()
    # A Lock released by another thread, then by its acquirer: the second is an over-release.
    lock.acquire()
    assert _in_thread(lock.release) is None  # the stdlib allows it
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()
    # An RLock released by a thread that does not own it.
    rlock = ctx.RLock()
    rlock.acquire()
    error = _in_thread(rlock.release)
    assert isinstance(error, AssertionError) and "not owned" in str(error)
    rlock.release()
    with pytest.raises(AssertionError, match="not owned"):
        rlock.release()
    # A BoundedSemaphore released by another thread while this one holds its unit.
    sem = ctx.BoundedSemaphore(1)
    sem.acquire()
    assert _in_thread(sem.release) is None
    with pytest.raises(ValueError, match="released too many times"):
        sem.release()
    # Nothing was left to raise later.
    ctx.session.state.direct.flush()


def test_a_release_this_thread_cannot_prove_valid_waits_for_its_reply(ctx):
    sem = ctx.Semaphore(0)
    sem.release()  # warm: a process's first call of a script waits for its loading too
    ctx.session.state.direct.flush()
    w0 = _waits(ctx)
    sem.release()  # this thread holds no unit: synchronous
    assert _waits(ctx) - w0 == 1
    assert sem.get_value() == 2


def test_a_condition_wait_after_a_deferred_release(ctx):
    """The lock's noted owner follows Condition.wait's release and re-acquire."""
    cond = ctx.Condition()
    with cond:
        assert cond.wait(0.01) is False
    with cond:  # released deferred above, re-acquired here
        pass
    ctx.session.state.direct.flush()
    lock = cond._lock
    with pytest.raises(AssertionError, match="not owned"):
        lock.release()  # an RLock: released already, now not owned
