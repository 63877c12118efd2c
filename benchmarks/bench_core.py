#!/usr/bin/env python
"""Core overheads of faasmp next to the stdlib and ``lithops.multiprocessing``.

    python benchmarks/bench_core.py [--quick] [--json OUT] [--impl stdlib,faasmp] [--metric first_map]

Three implementations run side by side:

* ``stdlib``   -- ``multiprocessing.get_context("fork")``
* ``lithops``  -- ``lithops.multiprocessing`` on the Lithops ``localhost`` backend, with its
                  Redis on a private valkey server (the one faasmp embeds) that this script starts
* ``faasmp``   -- ``faasmp`` with its defaults (localhost backend, embedded server)

Every (metric, implementation) pair runs in its own fresh interpreter, so imports and
cold starts are paid honestly, under a time limit: a child that overruns it is killed
(with every process it started, by PID) and reported as ``timeout``.  When the child
had already entered its measured section, the time it spent there gives a bound
(``>x`` for times, ``<x`` for rates), which is printed instead.

Metrics (lower is better for times, higher for rates):

first_map      fresh interpreter (after ``import``): ``with Pool(8) as p: p.map(time.sleep, [S]*8)``
               minus S -- pool creation and the first map, cold starts included
warm_map_8/32  after a warm-up map in the same interpreter (faasmp: ``start_warm_pool(N)`` first,
               its documented way to keep workers warm): ``with Pool(N) as p: p.map(time.sleep, [S]*N)``
               minus S, median of the repetitions
tiny_cs1       1000 ``abs`` calls on a warm ``Pool(8)``, ``chunksize=1``: tasks/s
tiny_default   the same with the default chunksize: tasks/s
process        warm ``Process(target=noop).start(); .join()`` latency, median of 10
monte_carlo    warm ``Pool(2).map`` of 8 pure-Python Monte Carlo chunks (2,000,000 points each):
               seconds, and efficiency = stdlib time / implementation time

S = 1 s (0.25 s with ``--quick``).  ``lithops`` gets ``localhost.worker_processes`` equal to the
pool size of each metric: its default (``os.cpu_count()``) would run a Pool(8)'s eight one-second
sleeps two at a time, which measures the configuration rather than the overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

IMPLS = ("stdlib", "lithops", "faasmp")
IMPL_LABEL = {"stdlib": "stdlib", "lithops": "lithops.mp", "faasmp": "faasmp"}
RESULT_MARK = "@@BENCH-RESULT@@ "
PHASE_MARK = "@@BENCH-PHASE@@ "

# name -> (label, unit, better, pool size lithops needs as worker_processes)
METRICS: dict[str, tuple[str, str, str, int]] = {
    "first_map": ("first Pool(8).map overhead (cold)", "s", "lower", 8),
    "warm_map_8": ("warm Pool(8).map overhead", "s", "lower", 8),
    "warm_map_32": ("warm Pool(32).map overhead", "s", "lower", 32),
    "tiny_cs1": ("tiny tasks, chunksize=1", "tasks/s", "higher", 8),
    "tiny_default": ("tiny tasks, default chunksize", "tasks/s", "higher", 8),
    "process": ("Process start+join (warm)", "s", "lower", 2),
    "monte_carlo": ("Monte Carlo pi, Pool(2)", "s", "lower", 2),
}

FULL = {
    "sleep": 1.0,
    "reps": 3,
    "tiny_n": 1000,
    "proc_reps": 10,
    "mc_chunks": 8,
    "mc_points": 2_000_000,
}
QUICK = {
    "sleep": 0.25,
    "reps": 1,
    "tiny_n": 200,
    "proc_reps": 2,
    "mc_chunks": 8,
    "mc_points": 100_000,
}
# Seconds a child may run (interpreter start, imports, warm-ups and shutdown included).
TIMEOUTS_FULL = {
    "stdlib": dict.fromkeys(METRICS, 60.0),
    "faasmp": dict.fromkeys(METRICS, 90.0),
    "lithops": {
        "first_map": 45.0,
        "warm_map_8": 75.0,
        "warm_map_32": 100.0,
        "tiny_cs1": 30.0,
        "tiny_default": 30.0,
        "process": 45.0,
        "monte_carlo": 60.0,
    },
}
TIMEOUTS_QUICK = {
    "stdlib": dict.fromkeys(METRICS, 15.0),
    "faasmp": dict.fromkeys(METRICS, 20.0),
    "lithops": {
        "first_map": 4.0,
        "warm_map_8": 4.0,
        "warm_map_32": 4.0,
        "tiny_cs1": 2.5,
        "tiny_default": 2.5,
        "process": 4.0,
        "monte_carlo": 4.0,
    },
}


# ---------------------------------------------------------------------------
# functions the workers run (module level: picklable by reference or by value)
# ---------------------------------------------------------------------------
def noop() -> None:
    pass


def mc_chunk(args: tuple[int, int]) -> int:
    """Points of a pure-Python Monte Carlo run that fall inside the unit circle."""
    import random  # noqa: PLC0415 - by-value functions carry no module globals

    seed, n = args
    rnd = random.Random(seed).random
    inside = 0
    for _ in range(n):
        x = rnd()
        y = rnd()
        if x * x + y * y <= 1.0:
            inside += 1
    return inside


# ---------------------------------------------------------------------------
# child side: one metric of one implementation
# ---------------------------------------------------------------------------
class Impl:
    """The few things a metric needs from an implementation."""

    Pool: Any
    Process: Any

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "stdlib":
            import multiprocessing  # noqa: PLC0415

            ctx = multiprocessing.get_context("fork")
            self.Pool, self.Process = ctx.Pool, ctx.Process
        elif name == "lithops":
            import lithops.multiprocessing as lmp  # noqa: PLC0415

            self.Pool, self.Process = lmp.Pool, lmp.Process
        elif name == "faasmp":
            import faasmp  # noqa: PLC0415

            self.Pool, self.Process = faasmp.Pool, faasmp.Process
            self._faasmp = faasmp
        else:
            raise ValueError(name)

    def warm(self, n: int) -> None:
        """Keep n workers warm where the implementation has a way to."""
        if self.name == "faasmp":
            self._faasmp.start_warm_pool(n)

    def shutdown(self) -> None:
        if self.name == "faasmp":
            self._faasmp.shutdown()


def phase(name: str, **info: Any) -> None:
    """Tell the parent (which may have to kill us) when a measured section starts."""
    print(PHASE_MARK + json.dumps({"phase": name, "t": time.monotonic(), **info}), flush=True)


def m_first_map(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    s = p["sleep"]
    phase("measure", kind="time", sub=s)
    t0 = time.perf_counter()
    with impl.Pool(8) as pool:
        pool.map(time.sleep, [s] * 8)
    dt = time.perf_counter() - t0
    return {"value": dt - s, "total_s": dt}


def _warm_map(impl: Impl, p: dict[str, Any], n: int) -> dict[str, Any]:
    s = p["sleep"]
    impl.warm(n)
    t0 = time.perf_counter()
    with impl.Pool(n) as pool:  # warm-up: every worker runs once
        pool.map(time.sleep, [0] * n)
    warmup = time.perf_counter() - t0
    samples = []
    for rep in range(p["reps"]):
        phase("measure" if rep == 0 else "rep", kind="time", sub=s)
        t0 = time.perf_counter()
        with impl.Pool(n) as pool:
            pool.map(time.sleep, [s] * n)
        samples.append(time.perf_counter() - t0 - s)
    return {"value": statistics.median(samples), "samples": samples, "warmup_s": warmup}


def m_warm_map_8(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return _warm_map(impl, p, 8)


def m_warm_map_32(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return _warm_map(impl, p, 32)


def _tiny(impl: Impl, p: dict[str, Any], chunksize: int | None) -> dict[str, Any]:
    n = p["tiny_n"]
    impl.warm(8)
    with impl.Pool(8) as pool:
        pool.map(abs, range(16), chunksize=1)  # warm-up: the workers are up
        phase("measure", kind="rate", n=n)
        t0 = time.perf_counter()
        out = pool.map(abs, range(n), chunksize=chunksize)
        dt = time.perf_counter() - t0
    assert out == list(range(n))
    return {"value": n / dt, "elapsed_s": dt, "n": n}


def m_tiny_cs1(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return _tiny(impl, p, 1)


def m_tiny_default(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return _tiny(impl, p, None)


def m_process(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    impl.warm(2)
    proc = impl.Process(target=noop)  # warm-up
    proc.start()
    proc.join()
    samples = []
    for rep in range(p["proc_reps"]):
        phase("measure" if rep == 0 else "rep", kind="time", sub=0.0)
        t0 = time.perf_counter()
        proc = impl.Process(target=noop)
        proc.start()
        proc.join()
        samples.append(time.perf_counter() - t0)
    return {"value": statistics.median(samples), "samples": samples}


def m_monte_carlo(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    chunks, points = p["mc_chunks"], p["mc_points"]
    impl.warm(2)
    with impl.Pool(2) as pool:  # warm-up
        pool.map(mc_chunk, [(0, 10)] * 2)
    phase("measure", kind="time", sub=0.0)
    t0 = time.perf_counter()
    with impl.Pool(2) as pool:
        inside = pool.map(mc_chunk, [(seed, points) for seed in range(chunks)])
    dt = time.perf_counter() - t0
    return {"value": dt, "pi": 4.0 * sum(inside) / (chunks * points)}


def child_main(impl_name: str, metric: str, params: dict[str, Any]) -> None:
    t0 = time.perf_counter()
    impl = Impl(impl_name)
    import_s = time.perf_counter() - t0
    result = globals()[f"m_{metric}"](impl, params)
    result["import_s"] = import_s
    t0 = time.perf_counter()
    impl.shutdown()
    result["shutdown_s"] = time.perf_counter() - t0
    print(RESULT_MARK + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    """PIDs of every live descendant of *pid* (children first)."""
    try:
        import psutil  # noqa: PLC0415

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - already gone
        return []
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in parents.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the child we started and every process it started, by PID."""
    victims = _descendants(proc.pid)
    for pid in [proc.pid, *victims]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_child(
    impl: str, metric: str, params: dict[str, Any], timeout: float, env: dict[str, str]
) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", impl, metric, "--params", json.dumps(params)]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,  # its own group: our terminal's ^C does not reach it half-way
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        killed_at = time.monotonic()
        _kill_tree(proc)
        out, err = proc.communicate()
    wall = time.monotonic() - t0
    result: dict[str, Any] | None = None
    phases = []
    for line in out.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK) :])
        elif line.startswith(PHASE_MARK):
            phases.append(json.loads(line[len(PHASE_MARK) :]))
    if result is not None:
        result.update(status="ok", wall_s=wall)
        return result
    if timed_out:
        res: dict[str, Any] = {"status": "timeout", "timeout_s": timeout, "wall_s": wall}
        # A single measurement that started and did not finish gives a bound.
        if len(phases) == 1 and phases[0]["phase"] == "measure":
            spent = killed_at - phases[0]["t"]
            if phases[0]["kind"] == "rate":
                res["bound"] = ("<", phases[0]["n"] / spent)
            elif spent - phases[0]["sub"] > 0:
                res["bound"] = (">", spent - phases[0]["sub"])
        return res
    tail = "\n".join(err.strip().splitlines()[-15:])
    return {"status": "error", "returncode": proc.returncode, "stderr": tail, "wall_s": wall}


def start_lithops_redis() -> tuple[Any, dict[str, Any]]:
    """A private valkey for lithops.multiprocessing (it reads redis-py kwargs from its config)."""
    from faasmp.backends.server import EmbeddedServer  # noqa: PLC0415

    server = EmbeddedServer.start()
    # redis-py connects over the unix socket: lithops passes the section to redis.StrictRedis(**conf)
    return server, {"unix_socket_path": server.socket_path, "password": server.password}


def lithops_env(tmp: str, redis_conf: dict[str, Any], workers: int) -> dict[str, str]:
    cfg = {
        "lithops": {"backend": "localhost", "storage": "localhost", "log_level": "WARNING"},
        "localhost": {"runtime": sys.executable, "worker_processes": workers},
        "redis": redis_conf,
    }
    path = os.path.join(tmp, f"lithops-{workers}.yaml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f)  # JSON is YAML; the password stays out of the environment
    env = dict(os.environ)
    env.pop("LITHOPS_CONFIG", None)
    env["LITHOPS_CONFIG_FILE"] = path
    return env


def fmt_value(res: dict[str, Any] | None, unit: str) -> str:
    if res is None:
        return "-"
    if res["status"] == "ok":
        v = res["value"]
        if unit == "tasks/s":
            return f"{v:,.0f}"
        return f"{v:.3f}"
    if res["status"] == "timeout":
        if "bound" in res:
            op, b = res["bound"]
            return f"{op}{b:,.0f}" if unit == "tasks/s" else f"{op}{b:.2f}"
        return "timeout"
    return "error"


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    """a/b, or a bound on it when b (the other implementation) timed out with one."""
    if not a or a["status"] != "ok" or not b:
        return "-"
    if b["status"] == "ok":
        if b["value"] <= 0:
            return "n/a"
        return f"{a['value'] / b['value']:.2f}x"
    if "bound" in b:
        op, bound = b["bound"]
        if bound <= 0:
            return "n/a"
        # a/b with b > bound means a/b < a/bound, and the other way round
        return f"{'<' if op == '>' else '>'}{a['value'] / bound:.3g}x"
    return "n/a"


def render(results: dict[str, dict[str, Any]], params: dict[str, Any]) -> str:
    head = [
        "metric",
        "unit",
        "better",
        "stdlib",
        "lithops.mp",
        "faasmp",
        "faasmp/stdlib",
        "faasmp/lithops",
    ]
    rows = []
    for m, (label, unit, better, _) in METRICS.items():
        if m not in results:
            continue
        r = results[m]
        rows.append(
            [
                label,
                unit,
                better,
                fmt_value(r.get("stdlib"), unit),
                fmt_value(r.get("lithops"), unit),
                fmt_value(r.get("faasmp"), unit),
                ratio(r.get("faasmp"), r.get("stdlib")),
                ratio(r.get("faasmp"), r.get("lithops")),
            ]
        )
        if m == "monte_carlo":
            eff = []
            for impl in IMPLS:
                std, mine = r.get("stdlib"), r.get(impl)
                if std and mine and std["status"] == "ok" and mine["status"] == "ok":
                    eff.append(f"{std['value'] / mine['value']:.2f}")
                else:
                    eff.append("-")
            rows.append(["  efficiency (stdlib/impl)", "", "higher", *eff, "", ""])
    imports = []
    for impl in IMPLS:
        vals = [
            r[impl]["import_s"]
            for r in results.values()
            if impl in r and r[impl]["status"] == "ok" and "import_s" in r[impl]
        ]
        imports.append(f"{statistics.median(vals):.3f}" if vals else "-")
    rows.append(["import (median)", "s", "lower", *imports, "", ""])
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(str(c).ljust(widths[i]) if i < 3 else str(c).rjust(widths[i]) for i, c in enumerate(row))
        for row in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = (
        f"sleep S={params['sleep']} s, reps={params['reps']}, tiny tasks={params['tiny_n']}, "
        f"Process reps={params['proc_reps']}, "
        f"Monte Carlo {params['mc_chunks']}x{params['mc_points']:,} points"
    )
    return "\n".join([*lines, "", note])


def evaluate_targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    def get(m: str, impl: str) -> dict[str, Any] | None:
        return results.get(m, {}).get(impl)

    def val(m: str, impl: str) -> float | None:
        r = get(m, impl)
        return r["value"] if r and r["status"] == "ok" else None

    out = []
    f8, s8, l8 = val("warm_map_8", "faasmp"), val("warm_map_8", "stdlib"), val("warm_map_8", "lithops")
    if f8 is not None and s8 is not None:
        out.append(
            {
                "target": "warm Pool(8).map(sleep) overhead <= 2x stdlib",
                "measured": f"{f8:.3f} s vs {s8:.3f} s = {f8 / s8:.2f}x" if s8 > 0 else f"{f8:.3f} s",
                "met": s8 > 0 and f8 <= 2 * s8,
            }
        )
    if f8 is not None and f8 > 0:
        lr = get("warm_map_8", "lithops")
        if l8 is not None:
            out.append(
                {
                    "target": "warm Pool(8).map(sleep) overhead >= 20x lower than lithops.multiprocessing",
                    "measured": f"{l8:.3f} s / {f8:.3f} s = {l8 / f8:.1f}x lower",
                    "met": l8 / f8 >= 20,
                }
            )
        elif lr and lr.get("bound"):
            out.append(
                {
                    "target": "warm Pool(8).map(sleep) overhead >= 20x lower than lithops.multiprocessing",
                    "measured": f"lithops timed out, > {lr['bound'][1]:.2f} s: > {lr['bound'][1] / f8:.1f}x",
                    # a lower bound proves the target, it cannot refute it
                    "met": True if lr["bound"][1] / f8 >= 20 else None,
                }
            )
    ff = val("first_map", "faasmp")
    if ff is not None:
        out.append({"target": "first map overhead <= 0.5 s", "measured": f"{ff:.3f} s", "met": ff <= 0.5})
    for m, label in (("tiny_cs1", "chunksize=1"), ("tiny_default", "default chunksize")):
        t = val(m, "faasmp")
        if t is not None:
            out.append(
                {
                    "target": f">= 5,000 tiny tasks/s on a warm pool ({label})",
                    "measured": f"{t:,.0f} tasks/s",
                    "met": t >= 5000,
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller workloads and short limits (< 60 s)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    ap.add_argument("--impl", default=",".join(IMPLS), help="comma-separated subset of " + ",".join(IMPLS))
    ap.add_argument("--metric", default=",".join(METRICS), help="comma-separated subset of metrics")
    ap.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every time limit")
    ap.add_argument("--child", nargs=2, metavar=("IMPL", "METRIC"), help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        child_main(args.child[0], args.child[1], json.loads(args.params))
        return

    impls = [i for i in args.impl.split(",") if i]
    metrics = [m for m in args.metric.split(",") if m]
    for name in impls:
        if name not in IMPLS:
            ap.error(f"unknown implementation {name!r}")
    for name in metrics:
        if name not in METRICS:
            ap.error(f"unknown metric {name!r}")
    params = QUICK if args.quick else FULL
    timeouts = TIMEOUTS_QUICK if args.quick else TIMEOUTS_FULL

    tmp = tempfile.mkdtemp(prefix="faasmp-bench-")
    os.chmod(tmp, 0o700)
    server = None
    redis_conf: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    try:
        if "lithops" in impls:
            server, redis_conf = start_lithops_redis()
        for m in metrics:
            results[m] = {}
            for impl in IMPLS:
                if impl not in impls:
                    continue
                env = dict(os.environ)
                if impl == "lithops":
                    env = lithops_env(tmp, redis_conf, METRICS[m][3])
                limit = timeouts[impl][m] * args.timeout_scale
                res = run_child(impl, m, params, limit, env)
                results[m][impl] = res
                shown = fmt_value(res, METRICS[m][1])
                extra = f" ({res['status']}, limit {limit:.0f} s)" if res["status"] != "ok" else ""
                print(
                    f"  {m:<13} {IMPL_LABEL[impl]:<11} {shown:>10} {METRICS[m][1]:<8}"
                    f" child {res['wall_s']:.1f} s{extra}",
                    file=sys.stderr,
                    flush=True,
                )
                if res["status"] == "error":
                    print("    " + res["stderr"].replace("\n", "\n    "), file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.monotonic() - started

    print()
    print(render(results, params))
    targets = evaluate_targets(results)
    if targets:
        print()
        print("targets (faasmp):")
        for t in targets:
            verdict = {True: "met", False: "NOT met", None: "undecided"}[t["met"]]
            print(f"  [{verdict}] {t['target']}: {t['measured']}")
    print(f"\ntotal benchmark time {total:.0f} s")

    if args.json:
        import lithops  # noqa: PLC0415

        import faasmp  # noqa: PLC0415

        doc = {
            "meta": {
                "quick": args.quick,
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "faasmp": faasmp.__version__,
                "lithops": lithops.__version__,
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "params": params,
                "total_s": total,
            },
            "metrics": {
                m: {"label": METRICS[m][0], "unit": METRICS[m][1], "better": METRICS[m][2]} for m in results
            },
            "results": results,
            "targets": targets,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
