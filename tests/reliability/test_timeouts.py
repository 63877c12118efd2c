"""Every blocking call's timeout path, locally and from a worker, and the opt-in task timeout."""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from faasmp import config as config_mod
from faasmp.connection import wait
from faasmp.context import FaasContext
from tests import helpers, helpers_reliability
from tests.conftest import TEST_SETTINGS

T = 0.3  # the timeout each call is given
SLACK = 15.0  # loose upper bound: "returns after its timeout, never hangs"


def _held_elsewhere(lock: Any) -> Any:
    """*lock* acquired by another thread (so an RLock is not re-entered by the caller)."""
    t = threading.Thread(target=lock.acquire)
    t.start()
    t.join(10)
    return lock


def _full_queue(ctx: FaasContext) -> Any:
    q = ctx.Queue(1)
    q.put("x")
    return q


def _unfinished_joinable(ctx: FaasContext) -> Any:
    q = ctx.JoinableQueue()
    q.put("never marked done")
    return q


_PIPES: list[Any] = []


def _open_pipe(ctx: FaasContext) -> Any:
    pipe = ctx.Pipe()
    _PIPES.append(pipe)
    return pipe


def _locked_condition_wait(ctx: FaasContext) -> bool:
    cond = ctx.Condition()
    with cond:
        return bool(cond.wait(T))


def _manager_call(ctx: FaasContext, call: Callable[[Any], Any]) -> Any:
    with ctx.Manager() as manager:
        return call(manager)


# name -> (call with timeout T, expected return value or exception type)
CASES: dict[str, tuple[Callable[[FaasContext], Any], Any]] = {
    "Queue.get": (lambda ctx: ctx.Queue().get(timeout=T), queue.Empty),
    "Queue.put on a full queue": (lambda ctx: _full_queue(ctx).put("y", timeout=T), queue.Full),
    "SimpleQueue.get(timeout=)": (lambda ctx: ctx.SimpleQueue().get(timeout=T), queue.Empty),
    "JoinableQueue.get": (lambda ctx: ctx.JoinableQueue().get(timeout=T), queue.Empty),
    "JoinableQueue.join(timeout=)": (lambda ctx: _unfinished_joinable(ctx).join(timeout=T), False),
    "Lock.acquire": (lambda ctx: _held_elsewhere(ctx.Lock()).acquire(timeout=T), False),
    "RLock.acquire": (lambda ctx: _held_elsewhere(ctx.RLock()).acquire(timeout=T), False),
    "Semaphore.acquire": (lambda ctx: ctx.Semaphore(0).acquire(timeout=T), False),
    "BoundedSemaphore.acquire": (
        lambda ctx: _held_elsewhere(ctx.BoundedSemaphore(1)).acquire(timeout=T),
        False,
    ),
    "Condition.wait": (_locked_condition_wait, False),
    "Event.wait": (lambda ctx: ctx.Event().wait(T), False),
    "Barrier.wait": (lambda ctx: ctx.Barrier(2).wait(T), threading.BrokenBarrierError),
    "Barrier(timeout=).wait": (lambda ctx: ctx.Barrier(2, timeout=T).wait(), threading.BrokenBarrierError),
    # Both ends stay alive: with the other end closed, poll() is True (EOF), as in the stdlib.
    "Connection.poll": (lambda ctx: _open_pipe(ctx)[0].poll(T), False),
    "connection.wait": (lambda ctx: wait([_open_pipe(ctx)[0]], T), []),
    "Value.get_lock().acquire": (
        lambda ctx: _held_elsewhere(ctx.Value("i", 0).get_lock()).acquire(timeout=T),
        False,
    ),
    "Manager().Queue().get": (
        lambda ctx: _manager_call(ctx, lambda m: m.Queue().get(timeout=T)),
        queue.Empty,
    ),
    "Manager().Lock().acquire": (
        lambda ctx: _manager_call(ctx, lambda m: _held_elsewhere(m.Lock()).acquire(timeout=T)),
        False,
    ),
    "Manager().Event().wait": (lambda ctx: _manager_call(ctx, lambda m: m.Event().wait(T)), False),
}


# Timeouts are Redis' own (BLPOP/BLMOVE/Lua): one backend is enough for the table;
# test_timeouts_from_inside_a_worker runs on both.
@pytest.mark.parametrize("ctx", ["embedded"], indirect=True)
@pytest.mark.parametrize("name", list(CASES))
def test_blocking_call_times_out(ctx, name):
    call, expected = CASES[name]
    t0 = time.monotonic()
    if isinstance(expected, type) and issubclass(expected, BaseException):
        with pytest.raises(expected):
            call(ctx)
    else:
        assert call(ctx) == expected
    elapsed = time.monotonic() - t0
    # It did wait (not an immediate answer) and came back (never a hang).
    assert T * 0.5 <= elapsed < T + SLACK, f"{name} returned after {elapsed:.2f}s for a {T}s timeout"


def test_timeouts_from_inside_a_worker(ctx):
    q, full_q = ctx.Queue(), _full_queue(ctx)
    lock = _held_elsewhere(ctx.Lock())
    sem, ev, cond = ctx.Semaphore(0), ctx.Event(), ctx.Condition()
    reader, _writer = ctx.Pipe()
    with ctx.Pool(1) as pool:
        out = pool.apply(helpers_reliability.timeout_paths_remote, (q, full_q, lock, sem, ev, cond, reader))
    assert out.pop("elapsed") < 7 * T + SLACK
    assert out == {
        "queue_get": "Empty",
        "queue_put": "Full",
        "lock": False,
        "sem": False,
        "event": False,
        "cond": False,
        "poll": False,
    }


# -- task_timeout (opt-in; the stdlib has no such setting) ---------------------


@pytest.fixture(scope="module")
def limited():
    ctx = FaasContext(task_timeout=1.0, **TEST_SETTINGS)
    yield ctx
    ctx.shutdown()


def test_task_past_its_limit_fails_with_timeout_error_naming_it(limited):
    with limited.Pool(2) as pool:
        t0 = time.monotonic()
        slow = pool.apply_async(helpers.sleep_then, (60, "late"))
        greedy = pool.apply_async(helpers_reliability.catch_everything_and_sleep, (60,))
        for result in (slow, greedy):
            with pytest.raises(
                multiprocessing.TimeoutError, match=r"pool task \S+ ran longer than task_timeout=1s"
            ):
                result.get(SLACK + 10)
        assert time.monotonic() - t0 < SLACK + 10
        # The workers were interrupted, not killed: the same pool keeps working.
        assert pool.map(helpers.square, range(6)) == [0, 1, 4, 9, 16, 25]
        assert pool.apply(helpers.sleep_then, (0.1, "in time")) == "in time"


def test_map_with_one_overlong_task_fails_the_map(limited):
    with limited.Pool(2) as pool:
        with pytest.raises(multiprocessing.TimeoutError, match="task_timeout"):
            pool.map(helpers.sleep_then, [0.01, 0.01, 60], chunksize=1)


def test_task_timeout_setting_is_validated_and_read_from_the_environment():
    assert config_mod.load(environ={}).task_timeout == 0.0  # off by default, like the stdlib
    assert config_mod.load(environ={"FAASMP_TASK_TIMEOUT": "2.5"}).task_timeout == 2.5
    with pytest.raises(ValueError, match="task_timeout"):
        config_mod.load(environ={}, task_timeout=-1)
    with pytest.raises(ValueError, match="task_timeout"):
        config_mod.load(environ={"FAASMP_TASK_TIMEOUT": "soon"})
