"""Round trips and Redis commands per faasmp operation: the noise-free performance metric.

Latency depends on the machine and its load; what one operation *asks of Redis*
does not.  For each operation this counts

* **round trips**: requests this process wrote to Redis (one per command,
  pipeline or batch; ``StateBackend.statistics().round_trips``, counted by a
  connection subclass in ``faasmp/backends/state.py``).  In the cloud each
  costs 0.3-1 ms, so this is the latency users see there.
* **waits**: of those, the ones this process waited for (it read a reply
  before its next write; ``statistics().waits``).  A request whose reply is
  read with the next request -- a Pipe send, a Lock release of a lock this
  thread holds -- is written, run by Redis at once, and costs no wait of its
  own: it rides in the next request's round trip.  ``lock_release`` thus
  counts 1 round trip and 0 waits, and a ``with lock:`` cycle 1 wait.
* **commands**: every command the server executed, those inside Lua scripts
  included (``INFO commandstats`` deltas, read on a separate connection).  This
  decides how many workers one Redis can serve.

Each operation runs ``reps`` times between two snapshots and the median count
is kept: the run's background traffic (heartbeats, key renewal, blocking pops
that time out) lands in a few repetitions at most.  Rows with two threads keep
the smallest count instead (their schedule varies).  Rows that involve a second
party (contended lock, condition, barrier, pool task, process) count every
request of this process and every command of the server during the operation,
both parties' included; their floors say so.

    python benchmarks/bench_counts.py                 # the table (markdown)
    python benchmarks/bench_counts.py --json          # machine-readable
    python benchmarks/bench_counts.py --record        # lower op_counts.json's counts (never raises one)

``op_counts.json`` (next to this file) holds the recorded counts and floors;
tests/test_op_counts.py fails when an operation needs more than recorded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORD = Path(__file__).with_name("op_counts.json")

#: (operation, floor in round trips, what the floor is).  The floor is one round
#: trip for a send, recv, put, get, uncontended acquire, release and a manager
#: get or set (docs/performance.md).
FLOORS: dict[str, tuple[int, str]] = {
    "pipe_send": (1, "one write; the reply is read with the next request"),
    "pipe_recv": (1, "one blocking pop"),
    "queue_put": (1, "one write"),
    "queue_get": (1, "one blocking pop"),
    "lock_acquire": (1, "uncontended: one script"),
    "lock_release": (1, "one script"),
    "lock_contended": (
        4,
        "both parties: acquire; the waiter registers, blocks in a pop; the handing release",
    ),
    "sem_acquire": (1, "uncontended: one script"),
    "sem_release": (1, "one script"),
    "event_set": (1, "one script"),
    "event_wait_set": (1, "one read of the flag"),
    "condition_wait_notify": (
        8,
        "both parties: waiter acquire, wait (register + release), woken pop, re-acquire (2 more "
        "when the notifier still holds the lock), release; notifier acquire, notify, release",
    ),
    "barrier_wait_2": (3, "both parties: two arrivals (the last one wakes), one woken pop"),
    "value_get": (1, "one read"),
    "value_set": (1, "one write"),
    "value_incr_locked": (2, "acquire (pulls the value), release (pushes it): release consistency"),
    "array_slice_get": (1, "one read"),
    "array_slice_set": (1, "one write"),
    "manager_dict_get": (1, "one read"),
    "manager_dict_set": (1, "one write"),
    "manager_list_append": (1, "one write"),
    "pool_task": (2, "client side: submit, result pop"),
    "process_start_join": (2, "client side: start, join pop"),
}


@dataclass(frozen=True)
class OpCount:
    """Median requests written by this process and commands run by the server, per operation."""

    round_trips: int
    commands: int
    waits: int = 0


class Counter:
    """Snapshots of this process' requests and the server's executed commands."""

    def __init__(self, ctx: Any) -> None:
        import redis  # benchmarks may talk to Redis directly

        self.state = ctx.session.state
        self._info = redis.Redis.from_url(ctx.session.url)

    def commands(self) -> int:
        stats = self._info.info("commandstats")
        # INFO itself and our connection's handshake are not the operation's.
        return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_hello"))

    def snapshot(self, end: bool = False) -> tuple[int, int, int]:
        """(round trips, waits, commands) so far.

        A deferred send has been written; its reply is read (flush writes
        nothing) so the server has run it before INFO is read.  That read is
        no wait of the operation's: at the *end* of one the statistics are
        taken before it, at the start after it (a deferred release in the
        setup).
        """
        if end:
            stats = self.state.statistics()
            self.state.direct.flush()
        else:
            self.state.direct.flush()
            stats = self.state.statistics()
        return stats.round_trips, stats.waits, self.commands()

    def count(
        self,
        op: Callable[[], Any],
        reps: int,
        setup: Callable[[], Any] | None = None,
        pick: Callable[[list[int]], float] = statistics.median,
    ) -> OpCount:
        """Counts of *op* over *reps* repetitions, *pick* of them (*setup* runs before each, uncounted)."""
        rts, cmds, waits = [], [], []
        for _ in range(reps):
            if setup is not None:
                setup()
            rt0, w0, c0 = self.snapshot()
            op()
            rt1, w1, c1 = self.snapshot(end=True)
            rts.append(rt1 - rt0)
            waits.append(w1 - w0)
            cmds.append(c1 - c0)
        return OpCount(round(pick(rts)), round(pick(cmds)), round(pick(waits)))

    def close(self) -> None:
        self._info.close()


def _noop() -> None:
    pass


#: The second party of two-thread rows: one long-lived thread, so its
#: connection (each thread has its own, see StateBackend.direct) is made once,
#: in the warm-up, and the counts measure the operation, not connection setup.
_HELPER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-counts-helper")


def measure(ctx: Any, reps: int = 15) -> dict[str, OpCount]:
    """Count every operation of :data:`FLOORS` on *ctx* (warm: each runs a few times first)."""
    c = Counter(ctx)
    out: dict[str, OpCount] = {}

    def run(
        name: str,
        op: Callable[[], Any],
        setup: Callable[[], Any] | None = None,
        n: int = reps,
        threads: bool = False,
    ) -> None:
        """Count *op* into ``out[name]`` after three uncounted warm-up runs."""
        for _ in range(3):  # warm up: scripts loaded, connections made, holders fresh
            if setup is not None:
                setup()
            op()
        # Two threads: which one runs first varies (a re-acquire may find the
        # lock still held: one more step), so keep the best schedule's count.
        out[name] = c.count(op, n, setup, pick=min if threads else statistics.median)

    try:
        # -- pipes ------------------------------------------------------------
        a, b = ctx.Pipe()
        run("pipe_send", lambda: a.send_bytes(b"x"))
        while b.poll():
            b.recv_bytes()
        run("pipe_recv", b.recv_bytes, setup=lambda: a.send_bytes(b"x"))
        a.close()
        b.close()

        # -- queues -----------------------------------------------------------
        q = ctx.Queue()
        run("queue_put", lambda: q.put(1))
        while not q.empty():
            q.get()
        run("queue_get", lambda: q.get(timeout=10), setup=lambda: q.put(1))

        # -- locks and semaphores ---------------------------------------------
        lock = ctx.Lock()
        run("lock_acquire", lambda: lock.acquire(timeout=10), setup=lambda: _free(lock))
        _free(lock)
        run("lock_release", lock.release, setup=lambda: lock.acquire(timeout=10))

        def written() -> int:
            return int(c.state.statistics().round_trips)

        def until_written(n: int) -> None:
            """Wait (without asking Redis) until this process has written *n* requests."""
            deadline = time.monotonic() + 10
            while written() < n and time.monotonic() < deadline:
                time.sleep(0.0005)

        def contended() -> None:
            lock.acquire(timeout=10)
            base = written()
            t = _HELPER.submit(lock.acquire, True, 10)
            until_written(base + 2)  # the waiter registered and sent its blocking pop
            lock.release()
            t.result(10)

        run("lock_contended", contended, setup=lambda: _free(lock), n=7, threads=True)
        _free(lock)

        sem = ctx.Semaphore(1)
        run("sem_acquire", lambda: sem.acquire(timeout=10), setup=lambda: _free(sem))
        _free(sem)
        run("sem_release", sem.release, setup=lambda: sem.acquire(timeout=10))

        # -- events, conditions, barriers ---------------------------------------
        ev = ctx.Event()
        run("event_set", ev.set, setup=ev.clear)
        ev.set()
        run("event_wait_set", lambda: ev.wait(10))

        cond = ctx.Condition()

        def waiter() -> None:
            with cond:
                cond.wait(10)

        def wait_notify() -> None:
            base = written()
            t = _HELPER.submit(waiter)
            until_written(base + 3)  # acquired, waiting (lock released), blocking pop sent
            with cond:
                cond.notify()
            t.result(10)

        run("condition_wait_notify", wait_notify, n=7, threads=True)

        bar = ctx.Barrier(2)

        def barrier() -> None:
            t = _HELPER.submit(bar.wait, 10)
            bar.wait(10)
            t.result(10)

        run("barrier_wait_2", barrier, n=7, threads=True)

        # -- shared memory ------------------------------------------------------
        val = ctx.Value("i", 0)
        run("value_get", lambda: val.value)
        run("value_set", lambda: setattr(val, "value", 1))

        def incr() -> None:
            with val.get_lock():
                val.value += 1

        run("value_incr_locked", incr)
        arr = ctx.Array("d", 1000)
        chunk = [1.0] * 100
        run("array_slice_get", lambda: arr[0:100])
        run("array_slice_set", lambda: arr.__setitem__(slice(0, 100), chunk))

        # -- managers -----------------------------------------------------------
        manager = ctx.Manager()
        d = manager.dict()
        d["k"] = 1
        run("manager_dict_get", lambda: d["k"])
        run("manager_dict_set", lambda: d.__setitem__("k", 1))
        lst = manager.list()
        run("manager_list_append", lambda: lst.append(1))

        # -- pool and processes ---------------------------------------------------
        with ctx.Pool(1) as pool:
            pool.apply(abs, (1,))
            run("pool_task", lambda: pool.apply(abs, (1,)), n=9)

        def process() -> None:
            p = ctx.Process(target=_noop)
            p.start()
            p.join(60)

        run("process_start_join", process, n=5)
        manager.shutdown()
    finally:
        c.close()
    return out


def _free(lock: Any) -> None:
    """Make *lock* (a Lock or a Semaphore(1)) free, whoever holds it."""
    if lock.acquire(False):
        lock.release()
    else:
        lock.release()


def load_record() -> dict[str, dict[str, int]]:
    """The recorded counts: ``{op: {"round_trips": n, "commands": m, "floor": f}}``."""
    doc: dict[str, dict[str, int]] = json.loads(RECORD.read_text())["ops"]
    return doc


def table(counts: dict[str, OpCount]) -> str:
    """The markdown table of docs/performance.md."""
    lines = [
        "| operation | round trips | waits | floor | Redis commands (Lua included) | floor means |",
        "|---|---|---|---|---|---|",
    ]
    for name, (floor, why) in FLOORS.items():
        got = counts.get(name)
        if got is None:
            continue
        mark = "" if got.round_trips <= floor else " ⚠"
        lines.append(
            f"| `{name}` | {got.round_trips}{mark} | {got.waits} | {floor} | {got.commands} | {why} |"
        )
    return "\n".join(lines)


def recorded_downward(counts: dict[str, OpCount]) -> dict[str, Any]:
    """The record with *counts* merged in, never above what was recorded before.

    A count that rose is a regression (or a longer row's noise) to fix, not
    to record: it keeps its recorded value (edit op_counts.json by hand to
    accept a rise on purpose).  The record's ``about`` text is kept.
    """
    old: dict[str, Any] = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    before = old.get("ops", {})
    ops = {}
    for name, cnt in counts.items():
        was = before.get(name, {})
        ops[name] = {
            "round_trips": min(cnt.round_trips, was.get("round_trips", cnt.round_trips)),
            "commands": min(cnt.commands, was.get("commands", cnt.commands)),
            "waits": min(cnt.waits, was.get("waits", cnt.waits)),
            "floor": FLOORS[name][0],
        }
    about = old.get(
        "about",
        "Recorded round trips and Redis commands per operation (benchmarks/bench_counts.py "
        "--record); tests/test_op_counts.py fails when an operation needs more.",
    )
    return {"about": about, "ops": ops}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the counts as JSON")
    ap.add_argument("--record", action="store_true", help=f"write the counts to {RECORD.name}")
    ap.add_argument("--reps", type=int, default=15, help="repetitions per operation (median kept)")
    args = ap.parse_args()
    import faasmp

    ctx = faasmp.get_context()
    # The shared-memory rows count the DSM (segments in Redis, pushed and
    # pulled at synchronisation points); host shared memory asks Redis nothing.
    ctx.configure(shared_memory="dsm")
    try:
        counts = measure(ctx, args.reps)
    finally:
        faasmp.shutdown()
    if args.record:
        RECORD.write_text(json.dumps(recorded_downward(counts), indent=2) + "\n")
    if args.json:
        print(json.dumps({k: vars(v) for k, v in counts.items()}, indent=2))
    else:
        print(table(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
