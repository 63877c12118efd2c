"""Remote code for the pipe and queue tests (shipped by value, like notebook code)."""

from __future__ import annotations

import threading
import time
from typing import Any


def echo(conn: Any) -> None:
    """Send back every object received until ``"stop"``, then close."""
    while True:
        msg = conn.recv()
        if msg == "stop":
            break
        conn.send(msg)
    conn.close()


def echo_bytes(conn: Any) -> None:
    """Send back every byte message until ``b"stop"`` (the benchmark's loop)."""
    while True:
        msg = conn.recv_bytes()
        if msg == b"stop":
            break
        conn.send_bytes(msg)


def send_range(conn: Any, n: int, close: bool = True) -> None:
    for i in range(n):
        conn.send(i)
    if close:
        conn.close()


def send_then_sleep(conn: Any, value: Any) -> None:
    """Use the connection, then never close it (the test kills the process)."""
    conn.send(value)
    time.sleep(600)


def sleep_then_send(conn: Any, delay: float, value: Any) -> None:
    time.sleep(delay)
    conn.send(value)


def make_pipe_and_send_back(out: Any, message: str) -> None:
    """Create a Pipe remotely, hand one end to the client, write to the other, exit."""
    import faasmp  # noqa: PLC0415

    r, w = faasmp.Pipe(duplex=False)
    out.put(r)
    w.send(message)
    # No close: the end is released when this process exits.


def pool_send(conn: Any, value: Any) -> str:
    conn.send(value)
    return "sent"


def produce(q: Any, producer: int, n: int) -> None:
    for i in range(n):
        q.put((producer, i))


def put_all(q: Any, items: list[Any]) -> None:
    for item in items:
        q.put(item)


def consume_joinable(q: Any, results: Any) -> None:
    """Double every item until ``None``; mark each one done."""
    while True:
        item = q.get(timeout=60)
        if item is None:
            q.task_done()
            return
        results.put(item * 2)
        q.task_done()


def simple_put(q: Any, items: list[Any]) -> None:
    for item in items:
        q.put(item)


def later(delay: float, fn: Any, *args: Any) -> threading.Thread:
    """Call ``fn(*args)`` after *delay* seconds on a daemon thread (client side of tests)."""

    def run() -> None:
        time.sleep(delay)
        fn(*args)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def send_os_connection(conn: Any) -> None:
    """What CPython's test_pickling does: send an OS-level connection over a faasmp pipe."""
    import multiprocessing.connection  # noqa: PLC0415

    r, w = multiprocessing.connection.Pipe()
    w.send("unreachable")
    conn.send(r)


def ignore_args(*args: Any) -> None:
    """A process that never touches what it was given."""


def put_generated(q: Any, size: int, seed: int) -> None:
    """Put ``random.Random(seed).randbytes(size)``, then the same in a dict (made here, not shipped)."""
    import random  # noqa: PLC0415

    data = random.Random(seed).randbytes(size)
    q.put(data)
    q.put({"k": data})


def count_receive_faults(how: str, source: Any, n: int, out: Any) -> None:
    """Receive *n* 1 MiB messages from *source* (a pipe end or a queue) as *how* says.

    Sends back on *out* the minor page faults per message of the receives
    alone, after three unmeasured ones.  A fresh process: its allocator has
    not yet raised its thresholds for large blocks, as a long-lived one may.
    """
    import resource  # noqa: PLC0415

    target = bytearray(1 << 20)

    def receive() -> int:
        if how == "queue":
            return len(source.get(timeout=30))
        if how == "recv_bytes":
            return len(source.recv_bytes())
        if how == "recv":
            return len(source.recv())
        return int(source.recv_bytes_into(target))

    for _ in range(3):
        receive()
    faults = 0
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        size = receive()
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        assert size == 1 << 20, size
    out.send(faults / n)


def send_len(conn: Any, data: Any) -> None:
    """Send the length of *data* (a Process' large argument) back."""
    conn.send(len(data))
