"""What the benchmark scripts share: implementations, child processes with time limits, Lithops' Redis.

* :class:`Impl` -- stdlib (fork) / ``lithops.multiprocessing`` / faasmp behind one face.
* :func:`run_child` -- run a fresh interpreter that measures one or more benchmarks and
  prints one result line per benchmark, each benchmark under its own time limit; a child
  that overruns a limit is killed with every process it started (:func:`kill_tree`) and
  the benchmark reported as ``timeout``, with a bound when a measurement had begun.
* :func:`start_lithops_redis` / :func:`lithops_env` -- a private valkey for
  ``lithops.multiprocessing`` and a Lithops config pointing at it.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

IMPLS = ("stdlib", "lithops", "faasmp")
IMPL_LABEL = {"stdlib": "stdlib", "lithops": "lithops.mp", "faasmp": "faasmp"}
RESULT_MARK = "@@BENCH-RESULT@@ "
PHASE_MARK = "@@BENCH-PHASE@@ "
BEGIN_MARK = "@@BENCH-BEGIN@@ "


# ---------------------------------------------------------------------------
# implementations (child side)
# ---------------------------------------------------------------------------
class Impl:
    """The few things a benchmark needs from an implementation.

    ``mp`` is the module-like object (``Pool``, ``Process``, ``Pipe``, ``Queue``,
    ``Lock``, ``Manager``, ``Array``...): the fork context, ``lithops.multiprocessing``
    or ``faasmp``.
    """

    mp: Any
    Pool: Any
    Process: Any

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "stdlib":
            import multiprocessing

            self.mp = multiprocessing.get_context("fork")
        elif name == "lithops":
            import lithops.multiprocessing as lmp

            self.mp = lmp
        elif name == "faasmp":
            import faasmp

            self.mp = faasmp
        else:
            raise ValueError(f"unknown implementation {name!r}; known: {', '.join(IMPLS)}")
        self.Pool, self.Process = self.mp.Pool, self.mp.Process

    def warm(self, n: int) -> None:
        """Keep n workers warm where the implementation has a way to (faasmp.start_warm_pool)."""
        if self.name == "faasmp":
            self.mp.start_warm_pool(n)

    def shutdown(self) -> None:
        if self.name == "faasmp":
            self.mp.shutdown()


def compile_faasmp_bytecode() -> None:
    """Compile faasmp's modules to bytecode in place (stale or missing files only).

    A wheel install has faasmp's bytecode compiled (pip compiles every module
    it installs), as lithops and every other dependency in site-packages
    have theirs.  An editable install run with ``PYTHONDONTWRITEBYTECODE=1``
    has none and never writes any, so every cold worker compiles faasmp's
    ~120 modules from source: measured ~60 ms of the ~145 ms its import costs
    on top of lithops' in a Lithops worker, and 70-110 ms of a first
    ``Process``/``Pool.map``.  The cold rows measure faasmp as installed, so
    the benchmarks compile it first (``compileall`` writes whatever the
    environment variable says, as pip does); stale files are rewritten from
    their sources' timestamps.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("faasmp")
    for root in (spec.submodule_search_locations or []) if spec else []:
        if not compileall.compile_dir(root, quiet=2, workers=1):
            raise RuntimeError(f"compiling faasmp's bytecode under {root!r} failed")


def ship_by_value(*modules: Any) -> None:
    """Pickle these (script-local) modules by value, so remote workers need not import them."""
    import cloudpickle

    for m in modules:
        cloudpickle.register_pickle_by_value(m)


def phase(name: str, **info: Any) -> None:
    """Tell the parent (which may have to kill us) that a measured section starts.

    ``kind="time"`` with ``sub`` (seconds of the section that are not overhead) or
    ``kind="rate"`` with ``n`` (items the section processes) let the parent turn the
    time spent before a kill into a bound.
    """
    print(PHASE_MARK + json.dumps({"phase": name, "t": time.monotonic(), **info}), flush=True)


def child_loop(impl_name: str, benches: list[str], run: Callable[[Any, str], dict[str, Any]]) -> None:
    """Child side of :func:`run_child`: run each benchmark, one result line each."""
    t0 = time.perf_counter()
    impl = Impl(impl_name)
    import_s = time.perf_counter() - t0
    for bench in benches:
        print(BEGIN_MARK + json.dumps({"bench": bench, "t": time.monotonic()}), flush=True)
        try:
            result = run(impl, bench)
            result["status"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported as this benchmark's error
            import traceback

            traceback.print_exc()
            result = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:500]}
        result["import_s"] = import_s
        result["load_avg_1m"] = os.getloadavg()[0]  # how busy the machine was (shared machines)
        print(RESULT_MARK + json.dumps({"bench": bench, **result}), flush=True)
    t0 = time.perf_counter()
    impl.shutdown()
    print(
        RESULT_MARK + json.dumps({"bench": "__shutdown__", "shutdown_s": time.perf_counter() - t0}),
        flush=True,
    )


# ---------------------------------------------------------------------------
# process trees (parent side)
# ---------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """PIDs of every live descendant of *pid* (psutil, ``/proc`` as a fallback).

    Lithops starts its task processes in new sessions, so a process-group kill
    would miss them; walking the parent links finds them all.
    """
    try:
        import psutil

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


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the child we started and every process it started, by PID.

    The child is stopped first so it cannot start new processes while its
    tree is walked.  Also used by tests/conformance/run_cpython_suite.py.
    """
    try:
        os.kill(proc.pid, signal.SIGSTOP)
    except ProcessLookupError:
        pass
    victims = descendants(proc.pid)
    for pid in [proc.pid, *victims]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def _bound(phases: list[dict[str, Any]], killed_at: float) -> tuple[str, float] | None:
    """A single measurement that started and did not finish gives a bound on it."""
    if len(phases) != 1 or phases[0]["phase"] != "measure" or phases[0]["kind"] not in ("time", "rate"):
        return None  # kind "per-op": a median of many operations, no bound from the time spent
    spent = killed_at - phases[0]["t"]
    if phases[0]["kind"] == "rate":
        return ("<", phases[0]["n"] / spent) if spent > 0 else None
    if spent - phases[0].get("sub", 0.0) > 0:
        return (">", spent - phases[0].get("sub", 0.0))
    return None


def run_child(
    cmd: list[str],
    benches: list[str],
    limits: dict[str, float],
    env: dict[str, str],
    startup_limit: float = 30.0,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run ``cmd + benches`` in a fresh interpreter, each benchmark under its own time limit.

    The child prints ``BEGIN`` / ``PHASE`` / ``RESULT`` lines (:func:`child_loop`).  When a
    benchmark overruns ``limits[bench]`` (counted from its ``BEGIN``; the start-up, from
    process start, gets *startup_limit* on top of the first one), the whole process tree is
    killed, that benchmark is reported as ``timeout`` and a new child runs the ones left.
    A child that dies reports ``error`` with the tail of its stderr.
    """
    results: dict[str, dict[str, Any]] = {}
    todo = list(benches)
    while todo:
        proc = subprocess.Popen(
            [*cmd, *todo],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            start_new_session=True,  # our terminal's ^C does not reach it half-way
        )
        lines: queue.Queue[str | None] = queue.Queue()
        err_tail: list[str] = []

        def read_out(p: subprocess.Popen[str] = proc, q: queue.Queue[str | None] = lines) -> None:
            assert p.stdout is not None
            for line in p.stdout:
                q.put(line)
            q.put(None)

        def read_err(p: subprocess.Popen[str] = proc, tail: list[str] = err_tail) -> None:
            assert p.stderr is not None
            for line in p.stderr:
                tail.append(line.rstrip("\n"))
                del tail[:-40]

        readers = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
        for t in readers:
            t.start()
        started = time.monotonic()
        current: str | None = None
        begun = started
        phases: list[dict[str, Any]] = []
        deadline = started + startup_limit + limits[todo[0]]
        eof = False
        while not eof:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                killed_at = time.monotonic()
                kill_tree(proc)
                proc.wait()
                if current is None and not todo:
                    break  # stuck in shutdown after the last result: nothing lost
                bench = current or todo[0]
                limit = limits[bench]
                res: dict[str, Any] = {
                    "status": "timeout",
                    "reason": f"no result within its {limit:.0f} s limit",
                    "timeout_s": limit,
                    "wall_s": killed_at - begun,
                }
                b = _bound(phases, killed_at)
                if b is not None:
                    res["bound"] = b
                results[bench] = res
                if on_result:
                    on_result(bench, res)
                todo.remove(bench)
                break
            if line is None:
                eof = True
                break
            if line.startswith(BEGIN_MARK):
                info = json.loads(line[len(BEGIN_MARK) :])
                current, begun, phases = info["bench"], time.monotonic(), []
                deadline = begun + limits[current]
            elif line.startswith(PHASE_MARK):
                phases.append(json.loads(line[len(PHASE_MARK) :]))
            elif line.startswith(RESULT_MARK):
                res = json.loads(line[len(RESULT_MARK) :])
                bench = res.pop("bench")
                if bench == "__shutdown__":
                    deadline = time.monotonic() + 30.0
                    continue
                res["wall_s"] = time.monotonic() - begun
                results[bench] = res
                if on_result:
                    on_result(bench, res)
                if bench in todo:
                    todo.remove(bench)
                current = None
                deadline = time.monotonic() + (limits[todo[0]] if todo else 30.0)
        if eof:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_tree(proc)
                proc.wait()
            for t in readers:
                t.join(timeout=5)
            if todo:  # died before reporting these
                bench = todo.pop(0)
                tail = "\n".join(err_tail[-15:])
                res = {
                    "status": "error",
                    "reason": f"the benchmark process exited with code {proc.returncode} "
                    f"without a result: {tail[-300:]}",
                    "stderr": tail,
                }
                results[bench] = res
                if on_result:
                    on_result(bench, res)
        else:
            for t in readers:
                t.join(timeout=5)
    return results


# ---------------------------------------------------------------------------
# lithops.multiprocessing's Redis
# ---------------------------------------------------------------------------
def start_lithops_redis() -> tuple[Any, dict[str, Any]]:
    """A private valkey for lithops.multiprocessing (it reads redis-py kwargs from its config)."""
    from faasmp.backends.server import EmbeddedServer

    server = EmbeddedServer.start()
    # redis-py connects over the unix socket: lithops passes the section to redis.StrictRedis(**conf)
    return server, {"unix_socket_path": server.socket_path, "password": server.password}


def lithops_env(tmp: str, redis_conf: dict[str, Any], workers: int) -> dict[str, str]:
    """Environment whose Lithops config runs *workers* localhost processes at once on our Redis.

    ``localhost.worker_processes`` defaults to ``os.cpu_count()``: a Pool(8)'s eight
    sleeps would then run two at a time, measuring the configuration, not the overhead.
    """
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


def ab_main(script: str, width: int = 20) -> None:
    """Interleaved A/B of two source trees: ``python SCRIPT TREE_A TREE_B [ROUNDS]``.

    Each round runs *script* ``--child`` once per tree (the order alternating
    from round to round, so drifting machine load hits both alike) with
    ``PYTHONPATH`` set to that tree; the child prints one JSON object of
    figures.  Prints each run and then the medians with their ratio B/A.
    """
    import statistics  # noqa: PLC0415 - only the A/B scripts need it

    src_a, src_b = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    results: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for r in range(rounds):
        order = ("A", "B") if r % 2 == 0 else ("B", "A")
        for label in order:
            env = dict(os.environ, PYTHONPATH=src_a if label == "A" else src_b)
            proc = subprocess.run(
                [sys.executable, script, "--child"], env=env, capture_output=True, text=True, timeout=600
            )
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if not line:
                raise SystemExit(f"round {r} {label} failed:\n{proc.stdout}\n{proc.stderr}")
            results[label].append(json.loads(line[-1]))
            print(label, r, line[-1], flush=True)
    print(f"\n{'metric':<{width}} {'A median':>10} {'B median':>10} {'B/A':>7}")
    for key in results["A"][0]:
        a = statistics.median(x[key] for x in results["A"])
        b = statistics.median(x[key] for x in results["B"])
        print(f"{key:<{width}} {a:>10.1f} {b:>10.1f} {b / a:>7.3f}")


def measure_cpu_wall(out: dict[str, float], name: str, op: Callable[[], Any], n: int) -> None:
    """*op* run *n* times after 300 warm-up calls: ``NAME_cpu_us`` (this process's CPU) and ``NAME_wall_us`` (median)."""
    import statistics  # noqa: PLC0415 - only the A/B scripts need it

    for _ in range(300):  # warm-up: connections, scripts, caches
        op()
    walls = []
    c0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        op()
        walls.append(time.perf_counter() - t0)
    out[f"{name}_cpu_us"] = (time.process_time() - c0) / n * 1e6
    out[f"{name}_wall_us"] = statistics.median(walls) * 1e6
