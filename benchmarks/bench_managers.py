"""p50 latency of manager operations: stdlib Manager() vs faasmp (embedded Valkey, unix socket).

Interleaved rounds; run from the project root: python benchmarks/bench_managers.py
"""

import multiprocessing
import multiprocessing.managers
import statistics
import time

from faasmp.context import FaasContext
from faasmp.managers import SyncManager


class Counter:
    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n


class StdM(multiprocessing.managers.SyncManager):
    pass


StdM.register("Counter", Counter)


class FaasM(SyncManager):
    pass


FaasM.register("Counter", Counter)

N = 2000


def p50(f, n=N):
    for _ in range(100):
        f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2] * 1e6


if __name__ == "__main__":
    std = StdM()
    std.start()
    ctx = FaasContext(idle_timeout=30.0)
    fm = FaasM(ctx=ctx)
    fm.start()
    objs = {}
    for name, m in (("stdlib", std), ("faasmp", fm)):
        d = m.dict(k=1)
        lst = m.list(range(10))
        c = m.Counter()
        objs[name] = {
            "dict set": lambda d=d: d.__setitem__("k", 1),
            "dict get": lambda d=d: d["k"],
            "list append": lambda lst=lst: lst.append(1),
            "list [i]": lambda lst=lst: lst[3],
            "Counter.increment": lambda c=c: c.increment(),
        }
    st = ctx.session.state
    results = {n: {op: [] for op in objs[n]} for n in objs}
    pings = []
    for _rnd in range(5):
        for name in objs:
            for op, f in objs[name].items():
                results[name][op].append(p50(f))
        pings.append(p50(st.ping))
    print(
        f"{'operation':20s} {'stdlib p50':>12s} {'faasmp p50':>12s}   (median of 5 interleaved rounds of {N})"
    )
    for op in objs["stdlib"]:
        s, f = statistics.median(results["stdlib"][op]), statistics.median(results["faasmp"][op])
        print(f"{op:20s} {s:10.1f}us {f:10.1f}us   x{f / s:.2f}")
    print(f"{'redis-py PING':20s} {'':12s} {statistics.median(pings):10.1f}us")
    fm.shutdown()
    std.shutdown()
    ctx.shutdown()
