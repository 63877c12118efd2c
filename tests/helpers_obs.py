"""Remote functions for tests/test_observability.py (importable by workers)."""

from __future__ import annotations

import sys
import time
from typing import Any


def learner(conn: Any, lock: Any, q: Any, ev: Any, shared: Any, n: int, code: int) -> None:
    """A master/worker 'learner': answers *n* requests, takes a lock, puts results, waits for a go."""
    for _ in range(n):
        x = conn.recv()
        with lock:
            pass
        conn.send(x * 2)
        q.put(x)
    shared["done"] = n
    ev.wait(30)
    print("learner done")  # 13 bytes of output
    sys.exit(code)


def echo_n(conn: Any, n: int) -> None:
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def echo_then_wait(conn: Any, ev: Any, n: int) -> None:
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())
    ev.wait(60)


def say(text: str) -> None:
    print(text)


def meet(barrier: Any) -> float:
    """Wait for the other task at *barrier* (so the two run at once, on two workers), then work a little."""
    barrier.wait(60)
    time.sleep(0.2)
    return time.time()
