"""Remote functions for the synchronize / sharedctypes tests (shipped by value)."""

from __future__ import annotations

import sys
import time
from typing import Any


def increment(value: Any, n: int) -> None:
    """The issue's acceptance test body: n increments under the value's lock."""
    for _ in range(n):
        with value.get_lock():
            value.value += 1


def log_critical_sections(lock: Any, log: Any, pos: Any, worker: int, rounds: int) -> None:
    """Write start/end markers into *log* at *pos* while holding *lock* (raw objects only).

    If two processes were ever inside at once, markers would interleave or be
    overwritten and the final log would show it.
    """
    for _ in range(rounds):
        with lock:
            i = pos.value
            log[i] = worker * 10 + 1
            time.sleep(0.002)
            log[i + 1] = worker * 10 + 2
            pos.value = i + 2


def hold_semaphore(sem: Any, guard: Any, current: Any, peak: Any, hold: float) -> None:
    """Count how many holders of *sem* there are at once (peak kept in *peak*)."""
    with sem:
        with guard:
            current.value += 1
            peak.value = max(peak.value, current.value)
        time.sleep(hold)
        with guard:
            current.value -= 1


def set_event_after(event: Any, delay: float) -> None:
    time.sleep(delay)
    event.set()


def barrier_wait(barrier: Any, slot: int, indices: Any) -> None:
    indices[slot] = barrier.wait(30)


def mark(counter: Any) -> None:
    """A Barrier action: count how often it ran."""
    counter.value += 1


def notify_after(cond: Any, flag: Any, delay: float) -> None:
    time.sleep(delay)
    with cond:
        flag.value = 1
        cond.notify()


def acquire_and_exit(lock: Any) -> None:
    """Take the lock and die holding it."""
    lock.acquire()


def release_foreign(lock: Any) -> None:
    """Release a lock this process does not own: exit 3 on AssertionError, 4 on ValueError."""
    try:
        lock.release()
    except AssertionError:
        sys.exit(3)
    except ValueError:
        sys.exit(4)


def try_acquire(lock: Any, timeout: float) -> None:
    """Exit 0 if the lock was acquired within *timeout*, 5 if not."""
    sys.exit(0 if lock.acquire(timeout=timeout) else 5)


def fill_array(arr: Any, start: int, values: list[Any]) -> None:
    arr[start : start + len(values)] = values


def read_struct(points: Any, out: Any) -> None:
    """Sum the fields of a shared array of Structures (the type rebuilt remotely)."""
    out.value = sum(p.x + p.y for p in points)


def add_to_value(v: Any, amount: float) -> float:
    with v.get_lock():
        v.value += amount
        return float(v.value)


def exit_with_mp_log_level() -> None:
    """(For the process tests.) Exit with the effective level of multiprocessing's logger."""
    import multiprocessing.util  # noqa: PLC0415

    sys.exit(multiprocessing.util.get_logger().getEffectiveLevel())


def take_lock_and_touch(lock: Any, ready: str, done: str) -> None:
    """Announce (file *ready*), wait for *lock*, then say so in file *done* (no Redis call after)."""
    import pathlib

    pathlib.Path(ready).touch()
    if not lock.acquire(timeout=60):
        raise SystemExit(2)
    pathlib.Path(done).touch()
    lock.release()
