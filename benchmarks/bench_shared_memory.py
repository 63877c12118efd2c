"""Cost of one synchronisation point of faasmp's shared memory, by array size and dirty fraction.

For each size and fraction of the array changed -- either one contiguous
slice ("slice") or randomly placed 8-byte elements ("scattered") -- it
measures (median of repeats, ms):

* ``release``: this process ships its changes (diff against the twin + one push);
* ``acquire``: another copy of the segment pulls them (one round trip + merge);
  the other copy is a second DSM registry in this process, so both sides run
  the real code over the real server without process start-up noise;
* ``sent`` / ``pulled``: bytes on the wire each way (payload only);
* ``rel cpu`` / ``acq cpu``: the CPU each costs, this process's
  (``time.process_time``) plus the server's main thread (``INFO cpu``), ms:
  unlike wall times, these hardly move with the load of a shared machine.

Run: ``python benchmarks/bench_shared_memory.py [--quick]``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from faasmp import sharedctypes
from faasmp.context import FaasContext
from faasmp.runtime import dsm

SIZES = (64 * 1024, 1024 * 1024, 16 * 1024 * 1024)
FRACTIONS = (0.0, 0.001, 0.01, 0.1, 1.0)


def server_cpu(ctx: FaasContext) -> float:
    """Seconds of CPU the server's main thread has used."""
    info = dict(
        line.split(":", 1)
        for line in ctx.session.state.direct.execute("INFO", "cpu").decode().splitlines()
        if ":" in line
    )
    return float(info["used_cpu_sys_main_thread"]) + float(info["used_cpu_user_main_thread"])


def timed(ctx: FaasContext, fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and the server) of one call of *fn*."""
    s0 = server_cpu(ctx)
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu + server_cpu(ctx) - s0


def measure(ctx: FaasContext, size: int, fraction: float, pattern: str, repeats: int) -> dict[str, float]:
    arr = ctx.RawArray("B", size)
    seg = sharedctypes.segment_of(arr)
    assert seg is not None and len(seg.mem) == size
    other = dsm.Registry()  # another process's view of the same segment
    copy = other.attach(seg.handle)
    assert copy is not None
    words = np.frombuffer(arr, dtype=np.float64)
    rng = np.random.default_rng(1)
    rel, acq, sent, pulled, rel_cpu, acq_cpu = [], [], [], [], [], []
    idle = statistics.median(timed(ctx, lambda: None)[1] for _ in range(5))  # the INFO calls' own cost
    for _ in range(repeats):
        k = int(len(words) * fraction)
        if pattern == "slice":
            start = int(rng.integers(0, len(words) - k + 1))
            words[start : start + k] += 1.0
        else:
            words[rng.choice(len(words), k, replace=False) if k else []] += 1.0
        before = dsm.REGISTRY.bytes_pushed
        wall, cpu = timed(ctx, dsm.release)
        rel.append(wall)
        rel_cpu.append(cpu - idle)
        sent.append(dsm.REGISTRY.bytes_pushed - before)
        before = other.bytes_pulled
        wall, cpu = timed(ctx, other.acquire)
        acq.append(wall)
        acq_cpu.append(cpu - idle)
        pulled.append(other.bytes_pulled - before)
    assert copy.mem == seg.mem, "the other copy did not converge"
    return {
        "release_ms": statistics.median(rel) * 1e3,
        "acquire_ms": statistics.median(acq) * 1e3,
        "release_cpu_ms": statistics.median(rel_cpu) * 1e3,
        "acquire_cpu_ms": statistics.median(acq_cpu) * 1e3,
        "sent": statistics.median(sent),
        "pulled": statistics.median(pulled),
    }


def main() -> None:
    quick = "--quick" in sys.argv
    ctx = FaasContext()
    ping = statistics.median(ctx.session.state.ping() for _ in range(50)) * 1e3
    print(f"Redis PING median: {ping:.3f} ms, load average {os.getloadavg()[0]:.1f}")
    head = f"{'size':>8} {'dirty':>6} {'pattern':>9} {'release ms':>11} {'acquire ms':>11}"
    print(f"{head} {'rel cpu':>8} {'acq cpu':>8} {'sent B':>10} {'pulled B':>10}")
    for size in SIZES[:2] if quick else SIZES:
        for fraction in FRACTIONS:
            for pattern in ("slice", "scattered") if 0 < fraction < 1 else ("slice",):
                r = measure(ctx, size, fraction, pattern, 5 if quick or size > 2**22 else 15)
                print(
                    f"{size // 1024:>6}Ki {fraction:>6.1%} {pattern:>9} {r['release_ms']:>11.2f} "
                    f"{r['acquire_ms']:>11.2f} {r['release_cpu_ms']:>8.2f} {r['acquire_cpu_ms']:>8.2f} "
                    f"{r['sent']:>10.0f} {r['pulled']:>10.0f}"
                )
    ctx.shutdown()


if __name__ == "__main__":
    main()
