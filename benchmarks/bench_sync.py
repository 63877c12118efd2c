"""Lock acquire+release and Value increment under lock: faasmp vs stdlib (median, µs).

The last column is a ping-pong between two threads over two semaphores
(release one, block on the other): two hand-overs to a blocked waiter.
"""

import multiprocessing
import statistics
import sys
import threading
import time

from faasmp.context import FaasContext


def median_us(fn, reps=3000):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e6


def ping_pong_us(mod, reps=1000):
    """Median µs of: release *ping*, then block until the other thread released *pong*."""
    ping, pong = mod.Semaphore(0), mod.Semaphore(0)

    def echo():
        for _ in range(reps):
            ping.acquire()
            pong.release()

    t = threading.Thread(target=echo, daemon=True)
    t.start()

    def cycle():
        ping.release()
        pong.acquire()

    result = median_us(cycle, reps)
    t.join(60)
    return result


def main():
    ctx = FaasContext()
    st = ctx.session.state
    rows = []
    for label, mod in (("faasmp", ctx), ("stdlib", multiprocessing)):
        lock, rlock, sem = mod.Lock(), mod.RLock(), mod.Semaphore(1)
        v = mod.Value("i", 0)
        ev = mod.Event()

        def lock_cycle(lk=lock):
            lk.acquire()
            lk.release()

        def rlock_cycle(lk=rlock):
            lk.acquire()
            lk.release()

        def sem_cycle(s=sem):
            s.acquire()
            s.release()

        def incr(v=v):
            with v.get_lock():
                v.value += 1

        def read(v=v):
            return v.value

        rows.append(
            (
                label,
                median_us(lock_cycle),
                median_us(rlock_cycle),
                median_us(sem_cycle),
                median_us(incr),
                median_us(read),
                median_us(ev.is_set),
                ping_pong_us(mod),
            )
        )
    print(
        f"{'(median µs)':10} {'Lock acq+rel':>13} {'RLock acq+rel':>14} {'Sem acq+rel':>12} {'Value += 1 under lock':>22} {'Value read':>11} {'Event.is_set':>13} {'ping-pong':>10}"
    )
    for r in rows:
        print(
            f"{r[0]:10} {r[1]:13.2f} {r[2]:14.2f} {r[3]:12.2f} {r[4]:22.2f} {r[5]:11.2f} {r[6]:13.2f} {r[7]:10.2f}"
        )
    print(f"Redis PING median: {statistics.median(st.ping() for _ in range(2000)) * 1e6:.1f} µs")
    ctx.shutdown()


if __name__ == "__main__":
    sys.exit(main())
