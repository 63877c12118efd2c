"""Bad input to every public constructor/factory: the stdlib's exception type, fast, no hang.

Each case runs the same call on faasmp and on the stdlib's ``multiprocessing``
and compares the outcome: the same exception type, or both accept it.
"""

from __future__ import annotations

import multiprocessing
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests import helpers, helpers_reliability


class Accepted(Exception):
    """Stands for "the call returned normally" in outcome comparisons."""


def _outcome(call: Callable[[], Any]) -> type[BaseException]:
    try:
        obj = call()
    except Exception as exc:  # noqa: BLE001 - the type is what we compare
        return type(exc)
    del obj
    return Accepted


#: Where faasmp deliberately rejects (or types) input differently, and why.
DELIBERATE: dict[str, tuple[type[BaseException], str]] = {
    "Semaphore(-1)": (ValueError, "the stdlib's OSError is sem_open's EINVAL; threading raises ValueError"),
    "BoundedSemaphore(-1)": (ValueError, "as Semaphore(-1)"),
    "Barrier(0)": (ValueError, "the stdlib accepts it and then every wait() blocks until its timeout"),
    "Barrier(-1)": (ValueError, "as Barrier(0)"),
    "Barrier('x')": (ValueError, "the stdlib accepts it and fails inside wait()"),
    "Barrier(2, action=3)": (TypeError, "the stdlib accepts it and fails in the last party's wait()"),
    "Condition(lock=3)": (TypeError, "the stdlib's AttributeError ('int' has no 'acquire') is incidental"),
    "Pipe(duplex='x')": (TypeError, "a string for a bool flag is a mistake (tests/test_connection.py)"),
}


# id -> call on a context (faasmp's, or the stdlib's default one)
CONSTRUCTORS: dict[str, Callable[[Any], Any]] = {
    "Pool(processes=0)": lambda m: m.Pool(processes=0),
    "Pool(processes=-1)": lambda m: m.Pool(processes=-1),
    "Pool(processes='x')": lambda m: m.Pool(processes="x"),
    "Pool(maxtasksperchild=0)": lambda m: m.Pool(1, maxtasksperchild=0),
    "Pool(maxtasksperchild=-1)": lambda m: m.Pool(1, maxtasksperchild=-1),
    "Pool(maxtasksperchild='x')": lambda m: m.Pool(1, maxtasksperchild="x"),
    "Pool(initializer=3)": lambda m: m.Pool(1, initializer=3),
    "Process(target=3) (not started)": lambda m: m.Process(target=3),
    "Process(args=5)": lambda m: m.Process(target=print, args=5),
    "Process(kwargs=5)": lambda m: m.Process(target=print, kwargs=5),
    "Process(name=5)": lambda m: m.Process(target=print, name=5),
    "Process(group='x')": lambda m: m.Process(group="x", target=print),
    "Queue(maxsize=-1)": lambda m: m.Queue(maxsize=-1),
    "Queue(maxsize=0)": lambda m: m.Queue(maxsize=0),
    "Queue(maxsize='x')": lambda m: m.Queue(maxsize="x"),
    "Queue(maxsize=1.5)": lambda m: m.Queue(maxsize=1.5),
    "JoinableQueue(maxsize=-1)": lambda m: m.JoinableQueue(maxsize=-1),
    "JoinableQueue(maxsize='x')": lambda m: m.JoinableQueue(maxsize="x"),
    "Array('zz', 3)": lambda m: m.Array("zz", 3),
    "Array('i', -1)": lambda m: m.Array("i", -1),
    "Array('i', 3.5)": lambda m: m.Array("i", 3.5),
    "Array('i', 'abc')": lambda m: m.Array("i", "abc"),
    "Array('i', [1, 'x'])": lambda m: m.Array("i", [1, "x"]),
    "Array('i', 3, lock=5)": lambda m: m.Array("i", 3, lock=5),
    "RawArray('zz', 3)": lambda m: m.RawArray("zz", 3),
    "RawArray('d', -2)": lambda m: m.RawArray("d", -2),
    "Value('q?')": lambda m: m.Value("q?"),
    "Value('i', 'x')": lambda m: m.Value("i", "x"),
    "Value('i', 1, 2)": lambda m: m.Value("i", 1, 2),
    "Value('i', lock=5)": lambda m: m.Value("i", 0, lock=5),
    "RawValue('zz')": lambda m: m.RawValue("zz"),
    "Semaphore(-1)": lambda m: m.Semaphore(-1),
    "Semaphore('x')": lambda m: m.Semaphore("x"),
    "BoundedSemaphore(-1)": lambda m: m.BoundedSemaphore(-1),
    "BoundedSemaphore('x')": lambda m: m.BoundedSemaphore("x"),
    "Barrier(0)": lambda m: m.Barrier(0),
    "Barrier(-1)": lambda m: m.Barrier(-1),
    "Barrier('x')": lambda m: m.Barrier("x"),
    "Barrier(2, action=3)": lambda m: m.Barrier(2, action=3),
    "Condition(lock=3)": lambda m: m.Condition(lock=3),
    "Pipe(duplex='x')": lambda m: m.Pipe(duplex="x"),
    "Pipe(duplex=False)": lambda m: m.Pipe(duplex=False),
}


@pytest.mark.parametrize("ctx", ["embedded"], indirect=True)  # validation does not depend on the server
@pytest.mark.parametrize("case", list(CONSTRUCTORS))
def test_constructor_rejects_like_the_stdlib(ctx, case):
    call = CONSTRUCTORS[case]
    expected = _outcome(lambda: call(multiprocessing.get_context("spawn")))
    t0 = time.monotonic()
    got = _outcome(lambda: call(ctx))
    assert time.monotonic() - t0 < 30
    if case in DELIBERATE:
        assert got is DELIBERATE[case][0] and got is not expected, f"{case}: faasmp {got}, stdlib {expected}"
        return
    # The same type as the stdlib, or a subclass of it (e.g. PicklingFailed is a TypeError).
    assert issubclass(got, expected), f"{case}: faasmp {got.__name__}, stdlib {expected.__name__}"


def test_error_messages_name_what_was_wrong(ctx):
    checks = [
        (lambda: ctx.Pool(0), "Number of processes must be at least 1"),
        (lambda: ctx.Semaphore(-1), "must be >= 0"),
        (lambda: ctx.Array("zz", 3), "zz"),
        (lambda: ctx.Queue("x"), "maxsize"),
    ]
    for call, text in checks:
        with pytest.raises(Exception) as info:
            call()
        assert text in str(info.value), f"{info.value!r} does not mention {text!r}"


# -- unpicklable arguments and targets -------------------------------------------------


def _generator() -> Any:
    yield 1


UNPICKLABLE: dict[str, Callable[[], Any]] = {
    "a threading.Lock": threading.Lock,
    "a socket": socket.socket,
    "a generator": _generator,
}


def _stdlib_type(what: str, outcome: type[BaseException]) -> type[BaseException]:
    """The exception type faasmp must raise where the stdlib gave *outcome*."""
    if what == "a socket":
        # Deliberate: the stdlib pickles a socket by duplicating its file
        # descriptor into the local child; a serverless worker on another
        # machine cannot receive it, so faasmp refuses it like a lock.
        assert outcome is Accepted
        return TypeError
    return outcome


@pytest.fixture(scope="module")
def stdlib_pool():
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        yield pool


@pytest.mark.parametrize("what", list(UNPICKLABLE))
def test_unpicklable_pool_arguments_fail_like_the_stdlib_and_the_pool_stays_usable(ctx, stdlib_pool, what):
    make = UNPICKLABLE[what]
    with ctx.Pool(1) as pool:
        for submit in (
            lambda p, obj: p.apply_async(helpers_reliability.identity, (obj,)).get(30),
            lambda p, obj: p.map(helpers_reliability.identity, [1, obj]),
            lambda p, obj: p.apply_async(helpers_reliability.identity, kwds={"x": obj}).get(30),
        ):
            obj = make()
            expected = _stdlib_type(what, _outcome(lambda: submit(stdlib_pool, obj)))  # noqa: B023
            with pytest.raises(Exception) as info:
                submit(pool, obj)
            assert isinstance(info.value, expected), f"faasmp {info.value!r}, stdlib {expected}"
            assert "pickle" in str(info.value), str(info.value)
            if hasattr(obj, "close"):
                obj.close()
        assert pool.apply(helpers.square, (7,)) == 49


@pytest.mark.parametrize("what", list(UNPICKLABLE))
def test_unpicklable_process_arguments_fail_at_start_like_spawn(ctx, what):
    obj = UNPICKLABLE[what]()
    spawn = multiprocessing.get_context("spawn")
    started = spawn.Process(target=helpers_reliability.identity, args=(obj,))
    expected = _stdlib_type(what, _outcome(started.start))
    if expected is not Accepted and started._popen is not None:  # type: ignore[attr-defined]
        started.join(10)
    proc = ctx.Process(target=helpers_reliability.identity, args=(obj,))
    with pytest.raises(Exception) as info:
        proc.start()
    assert isinstance(info.value, expected), f"faasmp {info.value!r}, stdlib {expected}"
    assert "pickle" in str(info.value)
    if hasattr(obj, "close"):
        obj.close()
    ok = ctx.Process(target=helpers.noop)
    ok.start()
    ok.join(60)
    assert ok.exitcode == 0


def test_unpicklable_target_and_non_callable_target(ctx):
    lock = threading.Lock()
    proc = ctx.Process(target=lock.acquire)  # a bound method of an unpicklable object
    with pytest.raises(TypeError, match="pickle"):
        proc.start()
    # A non-callable target fails in the child, as in the stdlib: exit code 1.
    bad = ctx.Process(target=3)
    bad.start()
    bad.join(60)
    assert bad.exitcode == 1
    with ctx.Pool(1) as pool:
        with pytest.raises(TypeError, match="not callable"):
            pool.apply(3)
        assert pool.apply(helpers.square, (3,)) == 9


def test_unpicklable_put_and_send_raise_at_once(ctx):
    """faasmp's Queue.put pickles before returning (the stdlib's feeder thread drops the item)."""
    q = ctx.Queue()
    with pytest.raises(TypeError, match="pickle"):
        q.put(threading.Lock())
    q.put("fine")
    assert q.get(timeout=10) == "fine"
    a, b = ctx.Pipe()
    with pytest.raises(TypeError, match="pickle"):
        a.send(_generator())
    a.send("fine")
    assert b.recv() == "fine"
