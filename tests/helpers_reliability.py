"""Functions the reliability tests run remotely (shipped by value, like notebook code)."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any


def catch_everything_and_sleep(seconds: float) -> str:
    """A task that swallows every Exception: task_timeout must still stop it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except Exception:  # noqa: BLE001 - deliberately greedy user code
            pass
    return "finished"


def identity(x: Any) -> Any:
    return x


def produce(q: Any, producer: int, n: int) -> int:
    for i in range(n):
        q.put((producer, i))
    return n


def consume(q: Any, out: Any, stop_after: int) -> int:
    """Take items until a None sentinel; send them back in one batch (a list)."""
    got = []
    while True:
        item = q.get(timeout=60)
        if item is None:
            break
        got.append(item)
    out.put(got)
    return len(got)


def child_result(q: Any, i: int) -> None:
    q.put((i, os.getpid()))


def write_keys(d: Any, writer: int, n: int) -> int:
    for i in range(n):
        d[f"w{writer}-{i}"] = (writer, i)
    return n


def bump_shared_counter(d: Any, lock: Any, n: int) -> int:
    for _ in range(n):
        with lock:
            d["counter"] = d["counter"] + 1
    return n


def timeout_paths_remote(
    q: Any, full_q: Any, lock: Any, sem: Any, ev: Any, cond: Any, conn: Any
) -> dict[str, Any]:
    """Each blocking call's timeout path, from inside a worker."""
    out: dict[str, Any] = {}
    t0 = time.monotonic()
    try:
        q.get(timeout=0.2)
        out["queue_get"] = "item?!"
    except queue.Empty:
        out["queue_get"] = "Empty"
    try:
        full_q.put(1, timeout=0.2)
        out["queue_put"] = "put?!"
    except queue.Full:
        out["queue_put"] = "Full"
    out["lock"] = lock.acquire(timeout=0.2)
    out["sem"] = sem.acquire(timeout=0.2)
    out["event"] = ev.wait(0.2)
    with cond:
        out["cond"] = cond.wait(0.2)
    out["poll"] = conn.poll(0.2)
    out["elapsed"] = time.monotonic() - t0
    return out


def log_everything(n: int) -> int:
    """Logs at every level and prints, so a test can search all output for secrets."""
    log = logging.getLogger("faasmp.tests.reliability")
    log.setLevel(logging.DEBUG)
    for i in range(n):
        log.debug("debug %d", i)
        log.info("info %d", i)
        print("printed", i)
    return n


def start_thread_and_return() -> str:
    threading.Thread(target=time.sleep, args=(0.01,)).start()
    return "ok"


def child_exit(q: Any, i: int) -> None:
    """Report (i, pid) and exit with a code derived from i."""
    import sys  # noqa: PLC0415

    q.put((i, os.getpid()))
    sys.exit(i % 4)
