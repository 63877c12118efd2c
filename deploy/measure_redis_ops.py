"""Measure what one Redis does per faasmp operation (numbers for docs/scaling.md).

For each structure: client p50 latency and ops/s of one client, Redis
commands per operation (INFO commandstats) and server CPU per operation
(INFO cpu, main thread) -> the ceiling of one Redis core (1e6 / cpu_us).
Then counts Redis connections per warm worker (CLIENT LIST by client name).

    python deploy/measure_redis_ops.py [--n 3000]

Uses the embedded server (unix socket) of the default context.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
from typing import Any

import redis

import faasmp


def _bump(d: Any) -> None:  # runs on workers: keeps a slot busy while we count connections
    time.sleep(d)


def _touch_and_sleep(q: Any, d: float) -> None:  # a Process that uses Redis, then stays
    q.put(1)
    time.sleep(d)


def commands(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))


def cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    user = info.get("used_cpu_user_main_thread", info["used_cpu_user"])
    system = info.get("used_cpu_sys_main_thread", info["used_cpu_sys"])
    return float(user) + float(system)


def background(r: redis.Redis, seconds: float = 2.0) -> tuple[float, float]:
    """Commands/s and server CPU s/s while idle (heartbeats, monitors): subtracted below."""
    c0, cpu0 = commands(r), cpu(r)
    time.sleep(seconds)
    return (commands(r) - c0 - 2) / seconds, (cpu(r) - cpu0) / seconds


def measure(r: redis.Redis, name: str, op: Any, n: int, idle: tuple[float, float]) -> dict[str, Any]:
    for _ in range(min(200, n)):  # warm up (script loading, connection)
        op()
    c0, cpu0 = commands(r), cpu(r)
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        op()
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    c1, cpu1 = commands(r), cpu(r)
    cpu_us = max(cpu1 - cpu0 - idle[1] * wall, 0.0) / n * 1e6
    return {
        "op": name,
        "p50_us": statistics.median(lat) * 1e6,
        "ops_s_one_client": n / wall,
        # commands the server ran, those inside Lua scripts included; minus INFO and idle traffic
        "redis_cmds_per_op": (c1 - c0 - 2 - idle[0] * wall) / n,
        "server_cpu_us": cpu_us,
        "ceiling_ops_s": 1e6 / cpu_us if cpu_us > 0 else float("inf"),
    }


def report(what: str, busy: collections.Counter[str], status: dict[str, Any]) -> None:
    worker_side = sum(v for k, v in busy.items() if k in ("host", "slot", "proc"))
    print(
        f"{what}: connections {dict(busy)}; {status['hosts']} host(s), {status['workers']} slot(s) -> "
        f"{worker_side / max(status['workers'], 1):.2f} worker-side connections per slot"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    ctx = faasmp.get_context()
    session = ctx.session
    r = redis.Redis.from_url(session.url)
    q = ctx.Queue()
    lock = ctx.Lock()
    value = ctx.Value("i", 0)
    a, b = ctx.Pipe()
    manager = ctx.Manager()
    d = manager.dict()

    def queue_put_get() -> None:
        q.put(1)
        q.get()

    def lock_pair() -> None:
        lock.acquire()
        lock.release()

    def value_incr() -> None:
        with value.get_lock():
            value.value += 1

    def pipe_rtt() -> None:
        a.send(1)
        b.recv()

    def dict_set() -> None:
        d["k"] = 1

    def dict_get() -> None:
        d["k"]

    idle = background(r)
    print(f"idle traffic: {idle[0]:.1f} commands/s, {idle[1] * 1e3:.2f} ms server CPU per s (subtracted)")
    raw = redis.Redis.from_url(session.url)

    def raw_set() -> None:
        raw.set("fmp-measure-raw", b"1")

    rows = [
        measure(r, "raw SET (redis-py, baseline)", raw_set, args.n, idle),
        measure(r, "Queue put+get", queue_put_get, args.n, idle),
        measure(r, "Lock acquire+release", lock_pair, args.n, idle),
        measure(r, "Value += 1 under its lock", value_incr, args.n, idle),
        measure(r, "Pipe send+recv", pipe_rtt, args.n, idle),
        measure(r, "Manager dict set", dict_set, args.n, idle),
        measure(r, "Manager dict get", dict_get, args.n, idle),
    ]
    head = ("operation", "p50 us", "ops/s 1 client", "cmds/op", "srv cpu us", "ceiling ops/s")
    print(f"{head[0]:<28} {head[1]:>8} {head[2]:>15} {head[3]:>8} {head[4]:>11} {head[5]:>14}")
    for row in rows:
        print(
            f"{row['op']:<28} {row['p50_us']:>8.1f} {row['ops_s_one_client']:>15.0f} "
            f"{row['redis_cmds_per_op']:>8.2f} {row['server_cpu_us']:>11.1f} {row['ceiling_ops_s']:>14.0f}"
        )

    def names() -> collections.Counter[str]:
        kinds: collections.Counter[str] = collections.Counter()
        for c in r.client_list():
            kinds[
                c.get("name", "").split("-")[1] if c.get("name", "").startswith("faasmp-") else "other"
            ] += 1
        return kinds

    print("\nconnections before any worker:", dict(names()))
    for slots in (4, 8):
        with ctx.Pool(slots) as pool:
            pool.map(abs, range(slots), chunksize=1)  # workers up
            res = pool.map_async(_bump, [1.5] * slots, chunksize=1)
            time.sleep(0.7)
            busy, status = names(), ctx.warm_pool_status()
            res.get(60)
        report(f"Pool({slots}) running", busy, status)
    procs = [ctx.Process(target=_touch_and_sleep, args=(q, 2.0)) for _ in range(4)]
    for p in procs:
        p.start()
    for _ in procs:
        q.get(timeout=60)  # every process is running and has used Redis
    busy, status = names(), ctx.warm_pool_status()
    for p in procs:
        p.join(60)
    report("4 Processes running", busy, status)
    raw.delete("fmp-measure-raw")
    manager.shutdown()
    faasmp.shutdown()


if __name__ == "__main__":
    main()
