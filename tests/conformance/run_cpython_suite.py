#!/usr/bin/env python
"""Run CPython's own multiprocessing tests against faasmp, the stdlib and lithops.multiprocessing.

    python tests/conformance/run_cpython_suite.py [--impl faasmp|stdlib|lithops ...]
        [--flavour processes|manager ...] [--jobs N] [--json OUT] [--only GLOB ...]

The tests are ``test._test_multiprocessing`` from this interpreter's standard
library, the ``processes`` and ``manager`` flavours (the ``WithProcesses*`` and
``WithManager*`` classes that ``test_multiprocessing_fork`` builds with
``install_tests_in_module_dict``).  Implementations:

* ``stdlib``  -- CPython's ``multiprocessing`` with the ``fork`` start method
* ``faasmp``  -- ``faasmp.patch()`` (embedded server, Lithops localhost workers)
* ``lithops`` -- ``lithops.multiprocessing`` 3.8 substituted for the names of
  ``multiprocessing`` the suite uses, with its Redis on a private valkey server

The implementation is put in place *before* the suite is imported (its mixins
bind ``multiprocessing.Process``, ``Pool``... at class creation).  Every test
class runs in a fresh interpreter with its own ``TMPDIR``; the child reports
each test's start and outcome on a pipe, and the parent enforces a time limit
per test: a test that overruns it is reported as ``timeout``, its child (and
every process that child started) is killed by PID, and the class goes on in a
new child from the next test.  A child that dies mid-test gives ``crash``.
The runner counts what the suite counts: a class fixture that fails
(``setUpModule``/``setUpClass``/``tearDownClass`` raising, or the child
crashing or hanging after its tests, e.g. at interpreter exit) fails every test
of that class that ran in the child -- their own outcome is kept as
``own_outcome`` -- because the suite's ``tearDownClass`` is where it shuts the
manager down and checks for leftover processes and threads.  Tests that fail,
error, time out or crash are re-run once in a fresh child (except those in
faasmp's expected-failure list, whatever the implementation); a test that
passes then is counted as ``flaky``, not as a pass.

The summary gives pass counts per implementation and flavour and the share of
the tests passing on the stdlib that also pass on each implementation.  The
JSON file (``--json``) holds every test's outcome, duration and detail; results
already in it for implementations/flavours not run this time are kept, so
``--impl faasmp`` can be compared with an earlier stdlib run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fnmatch
import json
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest
from collections.abc import Callable, Iterable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
# One process-tree walker and killer for the project's harnesses.
from benchmarks._common import descendants as _descendants  # noqa: E402
from benchmarks._common import kill_tree  # noqa: E402

IMPLS = ("stdlib", "faasmp", "lithops")
FLAVOURS = ("processes", "manager")
CLASS_PREFIX = {"processes": "WithProcesses", "manager": "WithManager"}
#: Outcomes that count as a failure of the implementation.
FAILING = ("fail", "error", "timeout", "crash")
#: ``flaky``: failed, then passed on its one re-run -- reported, never counted as a pass.
OUTCOMES = ("pass", "flaky", "fail", "error", "timeout", "crash", "skip")

#: faasmp settings for the children: short heartbeats so dead workers are seen
#: quickly, workers that stay warm for a whole test class.
FAASMP_ENV = {
    "FAASMP_IDLE_TIMEOUT": "30",
    "FAASMP_HEARTBEAT_INTERVAL": "0.5",
    "FAASMP_START_TIMEOUT": "60",
    "FAASMP_KEY_TTL": "900",
}
#: lithops.multiprocessing starts one invocation per Process: enough local
#: worker processes for the largest test (a 5-party barrier plus a pool).
LITHOPS_WORKER_PROCESSES = 10


# ---------------------------------------------------------------------------
# child side: one interpreter runs some tests of one class
# ---------------------------------------------------------------------------
def _patch_lithops() -> None:
    """Rebind the top-level names of ``multiprocessing`` to ``lithops.multiprocessing``'s.

    The same names :func:`faasmp.patch` rebinds, where lithops has them;
    ``multiprocessing.connection`` stays the stdlib's for both.  Lithops'
    ``current_process()`` falls back to ``multiprocessing.current_process()``
    on the client, so it keeps a reference to the stdlib's (else it would
    call itself).
    """
    import multiprocessing  # noqa: PLC0415
    import multiprocessing.pool  # noqa: PLC0415
    import types  # noqa: PLC0415

    import lithops.multiprocessing as lmp  # noqa: PLC0415
    import lithops.multiprocessing.process as lprocess  # noqa: PLC0415

    from faasmp.patch import _TOP_LEVEL  # noqa: PLC0415

    lprocess._mp = types.SimpleNamespace(current_process=multiprocessing.current_process)  # type: ignore[attr-defined]
    for name in _TOP_LEVEL:
        if hasattr(lmp, name):
            setattr(multiprocessing, name, getattr(lmp, name))
    multiprocessing.pool.Pool = lmp.Pool  # type: ignore[misc]


def prepare_impl(impl: str) -> None:
    """Put *impl* in place of ``multiprocessing`` (before the suite is imported)."""
    if impl == "faasmp":
        import faasmp  # noqa: PLC0415

        faasmp.patch()
    elif impl == "lithops":
        _patch_lithops()
    elif impl != "stdlib":
        raise ValueError(f"unknown implementation {impl!r}; known: {', '.join(IMPLS)}")


def _test_id(test: unittest.TestCase) -> str:
    return f"{type(test).__name__}.{test._testMethodName}"


def _short(text: str, lines: int = 40) -> str:
    parts = text.rstrip().splitlines()
    return "\n".join(parts[-lines:])


def _format(err: Any) -> str:
    return "".join(traceback.format_exception(err[0], err[1], err[2]))


class StreamingResult(unittest.TestResult):
    """A TestResult that reports each test's start and outcome as JSON lines."""

    _RANK = {"pass": 0, "skip": 1, "fail": 2, "error": 3}

    def __init__(self, emit: Callable[..., None]) -> None:
        super().__init__()
        self.emit = emit
        self._outcome: dict[str, tuple[str, str]] = {}
        self._started: dict[str, float] = {}

    def _set(self, test: Any, outcome: str, detail: str = "") -> None:
        if not isinstance(test, unittest.TestCase):
            # setUpModule/setUpClass/tearDownClass failure (an _ErrorHolder)
            self.emit(event="fixture", outcome=outcome, where=str(test), detail=_short(detail))
            return
        tid = _test_id(test)
        old = self._outcome.get(tid)
        if old is None or self._RANK[outcome] > self._RANK[old[0]]:
            self._outcome[tid] = (outcome, detail)

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        tid = _test_id(test)
        self._started[tid] = time.monotonic()
        print(f"\n===== {tid} =====", file=sys.stderr, flush=True)  # marks the child's log
        self.emit(event="start", test=tid)

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        tid = _test_id(test)
        outcome, detail = self._outcome.pop(tid, ("pass", ""))
        took = time.monotonic() - self._started.pop(tid, time.monotonic())
        self.emit(event="result", test=tid, outcome=outcome, detail=_short(detail), duration=round(took, 3))

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._set(test, "pass")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._set(test, "fail", _format(err))

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._set(test, "error", _format(err))

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._set(test, "skip", reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._set(test, "pass", "expected failure (unittest.expectedFailure)")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._set(test, "fail", "unexpected success (unittest.expectedFailure)")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self._set(test, kind, f"{subtest}: " + _format(err))


def child_main(impl: str, test_ids: list[str], report_fd: int) -> int:
    # Started from a background job, the interpreter inherits SIGINT ignored;
    # the suite's tests send SIGINT and expect KeyboardInterrupt, as in a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    report = os.fdopen(report_fd, "w", buffering=1)
    lock = threading.Lock()

    def emit(**event: Any) -> None:
        with lock:
            report.write(json.dumps(event) + "\n")
            report.flush()

    try:
        prepare_impl(impl)
        sys.path.insert(0, HERE)
        import cpython_suite  # noqa: PLC0415 - after the implementation is in place

        suite = unittest.TestSuite()
        for tid in test_ids:
            cls_name, method = tid.split(".", 1)
            suite.addTest(getattr(cpython_suite, cls_name)(method))
    except BaseException:  # noqa: BLE001 - reported to the parent
        emit(event="fixture", outcome="error", where="import", detail=_short(traceback.format_exc()))
        emit(event="done")
        return 1
    result = StreamingResult(emit)
    suite.run(result)
    emit(event="done")
    if impl == "faasmp":
        import faasmp  # noqa: PLC0415

        faasmp.shutdown()
    report.close()
    return 0


# ---------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------
def list_tests(flavour: str) -> dict[str, list[str]]:
    """Test ids per class of *flavour*, in definition order (listed with the stdlib)."""
    import test._test_multiprocessing as suite  # noqa: PLC0415

    globs: dict[str, Any] = {"__name__": "listing"}
    suite.install_tests_in_module_dict(globs, "fork", only_type=flavour)
    loader = unittest.TestLoader()
    out: dict[str, list[str]] = {}
    for name, obj in globs.items():
        if isinstance(obj, type) and issubclass(obj, unittest.TestCase):
            out[name] = [f"{name}.{m}" for m in loader.getTestCaseNames(obj)]
    return out


class Limits:
    def __init__(self, test_timeout: float, setup_timeout: float, exit_timeout: float, memory: float) -> None:
        self.test = test_timeout
        self.setup = setup_timeout
        self.exit = exit_timeout
        self.memory = memory  # bytes of resident memory any one process of a child's tree may use


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _largest_rss(pids: Iterable[int]) -> tuple[int, int]:
    """(pid, resident bytes) of the largest process among *pids*."""
    best = (0, 0)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss = int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
        if rss > best[1]:
            best = (pid, rss)
    return best


def _reader(fd: int, events: queue.Queue[dict[str, Any] | None]) -> None:
    with os.fdopen(fd, "r") as f:
        for line in f:
            with contextlib.suppress(ValueError):
                events.put(json.loads(line))
    events.put(None)


def _log_tail(path: str, lines: int = 25) -> str:
    try:
        with open(path, errors="replace") as f:
            return _short(f.read(), lines)
    except OSError:
        return ""


def run_child_once(
    impl: str, tests: list[str], env: dict[str, str], limits: Limits, log_path: str
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Run *tests* (one class) in one child until they finish or the child must be killed.

    Returns the results of the tests that got one and the fixture events
    (setUpClass/tearDownClass errors).  Tests that did not run are absent.
    """
    rfd, wfd = os.pipe()
    # Started with -c in the child's temp dir: neither the current directory nor
    # __main__'s directory is then the project, so faasmp does not ship
    # cpython_suite (a module under the project root) by value; workers import
    # the test classes by name (see cpython_suite's docstring).
    child = "import sys, run_cpython_suite as r; sys.exit(r.main())"
    cmd = [sys.executable, "-c", child, "--child", impl, "--report-fd", str(wfd), *tests]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=env.get("TMPDIR"),
            pass_fds=(wfd,),
            start_new_session=True,
        )
    os.close(wfd)
    events: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=_reader, args=(rfd, events), daemon=True).start()
    results: dict[str, dict[str, Any]] = {}
    fixtures: list[dict[str, Any]] = []
    current: str | None = None
    started = test_started = time.monotonic()
    deadline = started + limits.setup + limits.test
    done = False
    try:
        while True:
            try:
                # wake up every second to watch memory: a runaway test must not take the machine down
                ev = events.get(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                pid, rss = _largest_rss([proc.pid, *_descendants(proc.pid)])
                if rss > limits.memory:
                    gib, limit = rss / 2**30, limits.memory / 2**30
                    why = f"process {pid} used {gib:.1f} GiB (limit {limit:.1f}); child killed"
                    if current is not None:
                        results[current] = {
                            "outcome": "crash",
                            "duration": round(time.monotonic() - test_started, 3),
                            "detail": why + "\n" + _log_tail(log_path),
                        }
                    else:
                        where = "exit" if done else "setup"
                        fixtures.append({"where": where, "outcome": "crash", "detail": why})
                    break
                if time.monotonic() < deadline:
                    continue
                if done:
                    fixtures.append(
                        {"where": "exit", "outcome": "timeout", "detail": "killed after its tests"}
                    )
                elif current is not None:
                    results[current] = {
                        "outcome": "timeout",
                        "duration": round(time.monotonic() - test_started, 3),
                        "detail": f"no result in {limits.test:.0f} s; child killed\n" + _log_tail(log_path),
                    }
                else:
                    fixtures.append(
                        {
                            "where": "setup",
                            "outcome": "timeout",
                            "detail": f"no test started within {limits.setup + limits.test:.0f} s\n"
                            + _log_tail(log_path),
                        }
                    )
                break
            if ev is None:  # the child closed its report pipe: it exited
                if current is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(5)  # for its exit code
                    results[current] = {
                        "outcome": "crash",
                        "duration": round(time.monotonic() - test_started, 3),
                        "detail": f"the test interpreter exited (code {proc.poll()}) during the test\n"
                        + _log_tail(log_path),
                    }
                elif not done:
                    fixtures.append({"where": "child", "outcome": "crash", "detail": _log_tail(log_path)})
                break
            kind = ev.get("event")
            if kind == "start":
                current = ev["test"]
                test_started = time.monotonic()
                deadline = test_started + limits.test
            elif kind == "result":
                results[ev["test"]] = {k: ev[k] for k in ("outcome", "duration", "detail")}
                current = None
                deadline = time.monotonic() + limits.test
            elif kind == "fixture":
                fixtures.append({k: ev.get(k) for k in ("where", "outcome", "detail")})
            elif kind == "done":
                done = True
                deadline = time.monotonic() + limits.exit
    finally:
        if proc.poll() is None:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()) if done else 0)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            kill_tree(proc)
        else:  # the child is gone; stray workers it left behind are not
            for pid in _descendants(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    return results, fixtures


def run_class(
    impl: str, tests: list[str], base_env: dict[str, str], limits: Limits, workdir: str
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Run every test of one class, restarting a child after a timeout or crash."""
    remaining = list(tests)
    results: dict[str, dict[str, Any]] = {}
    fixtures: list[dict[str, Any]] = []
    cls_name = tests[0].split(".", 1)[0]
    attempt = 0
    while remaining:
        attempt += 1
        # short: AF_UNIX socket paths (Listener, managers) under it are limited to 107 bytes
        tmp = tempfile.mkdtemp(prefix="c-", dir=workdir)
        env = dict(base_env, TMPDIR=tmp)
        log_path = os.path.join(workdir, f"{impl}-{cls_name}.log")
        got, fix = run_child_once(impl, remaining, env, limits, log_path)
        shutil.rmtree(tmp, ignore_errors=True)
        results.update(got)
        fixtures.extend(fix)
        remaining = [t for t in remaining if t not in results]
        if not remaining:
            break
        if not got:
            # Nothing ran: a class fixture failed or was skipped; every test shares its fate.
            fixture = next((f for f in fix if f["where"] != "exit"), None) or {
                "outcome": "crash",
                "detail": "the child ran no test",
            }
            outcome = fixture["outcome"] if fixture["outcome"] in OUTCOMES else "error"
            for t in remaining:
                detail = "class fixture: " + fixture["detail"]
                results[t] = {"outcome": outcome, "duration": 0.0, "detail": detail}
            break
    return apply_class_fixtures(results, fixtures), fixtures


def apply_class_fixtures(
    results: dict[str, dict[str, Any]], fixtures: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Fail the passing tests of a class whose fixture failed, as the suite counts it.

    unittest reports a failing ``setUpClass``/``tearDownClass`` once, as an
    error of the class; the tests that "passed" before it did so without the
    class' own checks (manager shutdown, leftover processes and threads).  A
    child that crashed or hung after its tests (``where == "exit"``) fails
    them the same way.  A skip stays a skip: it claimed nothing.
    """
    failure = next((f for f in fixtures if f["outcome"] in FAILING), None)
    if failure is None:
        return results
    where = failure.get("where") or "?"
    detail = f"class fixture failed ({where}: {failure['outcome']}):\n{failure.get('detail') or ''}"
    return {
        tid: dict(r, outcome="error", own_outcome="pass", detail=detail) if r["outcome"] == "pass" else r
        for tid, r in results.items()
    }


def merge_rerun(first: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    """A failed test's result after its re-run: ``flaky`` if it passed then, else the first failure."""
    if again["outcome"] == "pass":
        return dict(again, outcome="flaky", first=first)
    return dict(first, rerun=again["outcome"])


def run_flavour(
    impl: str,
    flavour: str,
    classes: dict[str, list[str]],
    base_env: dict[str, str],
    limits: Limits,
    jobs: int,
    workdir: str,
    rerun: bool,
) -> dict[str, Any]:
    t0 = time.monotonic()
    tests: dict[str, dict[str, Any]] = {}
    fixtures: dict[str, list[dict[str, Any]]] = {}
    order = sorted(classes, key=lambda c: -len(classes[c]))  # long classes first

    def one(cls_name: str, ids: list[str]) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
        res, fix = run_class(impl, ids, base_env, limits, workdir)
        return cls_name, res, fix

    def report(cls_name: str, res: dict[str, Any], label: str = "") -> None:
        counts = {o: sum(1 for r in res.values() if r["outcome"] == o) for o in OUTCOMES}
        shown = " ".join(f"{o}={n}" for o, n in counts.items() if n)
        print(f"  {impl:<8} {flavour:<9} {cls_name:<40} {shown}{label}", file=sys.stderr, flush=True)

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(one, c, classes[c]) for c in order]
        for fut in concurrent.futures.as_completed(futures):
            cls_name, res, fix = fut.result()
            tests.update(res)
            if fix:
                fixtures[cls_name] = fix
            report(cls_name, res)
        if rerun:
            known = _tables().EXPECTED_FAILURES  # known failures are not re-run (for any implementation)
            failed: dict[str, list[str]] = {}
            for tid, r in tests.items():
                if r["outcome"] in FAILING and tid not in known:
                    failed.setdefault(tid.split(".", 1)[0], []).append(tid)
            futures = [pool.submit(one, c, ids) for c, ids in failed.items()]
            for fut in concurrent.futures.as_completed(futures):
                cls_name, res, _ = fut.result()
                for tid, r in res.items():
                    tests[tid] = merge_rerun(tests[tid], r)
                report(cls_name, res, " (re-run of failures)")
    return {
        "impl": impl,
        "flavour": flavour,
        "wall_s": round(time.monotonic() - t0, 1),
        "counts": {o: sum(1 for r in tests.values() if r["outcome"] == o) for o in OUTCOMES},
        "tests": dict(sorted(tests.items())),
        "fixtures": fixtures,
    }


def start_lithops_redis(workdir: str) -> tuple[Any, str]:
    """A private valkey for lithops.multiprocessing and a Lithops config file pointing at it."""
    from faasmp.backends.server import EmbeddedServer  # noqa: PLC0415

    server = EmbeddedServer.start()
    cfg = {
        "lithops": {"backend": "localhost", "storage": "localhost", "log_level": "WARNING"},
        "localhost": {"runtime": sys.executable, "worker_processes": LITHOPS_WORKER_PROCESSES},
        # lithops passes this section to redis.StrictRedis(**conf)
        "redis": {"unix_socket_path": server.socket_path, "password": server.password},
    }
    path = os.path.join(workdir, "lithops.yaml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f)  # JSON is YAML; the password stays out of the environment
    return server, path


def impl_env(impl: str, lithops_config: str | None) -> dict[str, str]:
    env = dict(os.environ)
    # Workers import the test classes by name (cpython_suite), like spawn children do.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, ROOT, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    if impl == "faasmp":
        env.update(FAASMP_ENV)
    if impl == "lithops":
        assert lithops_config is not None
        env.pop("LITHOPS_CONFIG", None)
        env["LITHOPS_CONFIG_FILE"] = lithops_config
    return env


# ---------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------
def _tables() -> Any:
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from tests.conformance import expected_failures  # noqa: PLC0415

    return expected_failures


def compare(
    runs: dict[str, Any], impl: str, flavour: str, exclude: Iterable[str] = ()
) -> dict[str, Any] | None:
    """Share of the tests passing on the stdlib (minus *exclude*) that pass on *impl* too."""
    base = runs.get(f"stdlib/{flavour}")
    run = runs.get(f"{impl}/{flavour}")
    if base is None or run is None:
        return None
    skip = set(exclude)
    passing = [t for t, r in base["tests"].items() if r["outcome"] == "pass" and t not in skip]
    also = [t for t in passing if run["tests"].get(t, {}).get("outcome") == "pass"]
    return {
        "stdlib_pass": len(passing),
        "also_pass": len(also),
        "ratio": round(len(also) / len(passing), 4) if passing else None,
        "lost": sorted(set(passing) - set(also)),
    }


def summarize(runs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The table printed at the end, and the per-run summary stored in the JSON file."""
    tables = _tables()
    lines = [
        f"{'impl':<8} {'flavour':<10} {'tests':>5} {'pass':>5} {'fail':>5} {'error':>5} {'t/o':>4} "
        f"{'crash':>5} {'skip':>5} {'flaky':>5} {'of stdlib passes':>18} {'applicable only':>18} {'wall':>6}"
    ]
    summary: dict[str, Any] = {}
    for flavour in FLAVOURS:
        for impl in IMPLS:
            run = runs.get(f"{impl}/{flavour}")
            if run is None:
                continue
            c = run["counts"]
            flaky = c.get("flaky", 0)
            cmp_all = compare(runs, impl, flavour)
            cmp_app = compare(runs, impl, flavour, exclude=tables.NOT_APPLICABLE)

            def share(cmp_: dict[str, Any] | None) -> str:
                if not cmp_ or cmp_["ratio"] is None:  # nothing passed on the stdlib to compare with
                    return "-"
                return f"{cmp_['also_pass']}/{cmp_['stdlib_pass']} {cmp_['ratio']:.1%}"

            lines.append(
                f"{impl:<8} {flavour:<10} {len(run['tests']):>5} {c['pass']:>5} {c['fail']:>5} "
                f"{c['error']:>5} {c['timeout']:>4} {c['crash']:>5} {c['skip']:>5} {flaky:>5} "
                f"{share(cmp_all):>18} {share(cmp_app):>18} {run['wall_s']:>5.0f}s"
            )
            entry: dict[str, Any] = {
                "counts": c,
                "flaky": sorted(t for t, r in run["tests"].items() if r["outcome"] == "flaky"),
                "vs_stdlib": cmp_all,
                "vs_stdlib_applicable": cmp_app,
            }
            if impl == "faasmp":
                failing = [t for t, r in run["tests"].items() if r["outcome"] in FAILING]
                expected = tables.EXPECTED_FAILURES
                passing = [t for t, r in run["tests"].items() if r["outcome"] == "pass"]
                entry["unexpected_failures"] = sorted(t for t in failing if t not in expected)
                entry["unexpected_passes"] = sorted(t for t in passing if t in expected)
                entry["fixture_failures"] = sorted(
                    t for t, r in run["tests"].items() if r.get("own_outcome") is not None
                )
            summary[f"{impl}/{flavour}"] = entry
    lines.append(
        "('of stdlib passes': tests passing on the stdlib that pass here too; 'applicable only': the same"
        " without faasmp's NOT_APPLICABLE list, deliberate differences still counted; 'flaky': failed,"
        " then passed on the re-run, not counted as passes)"
    )
    return "\n".join(lines), summary


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", action="append", choices=IMPLS, help="implementation(s) to run (default: all)")
    ap.add_argument("--flavour", action="append", choices=FLAVOURS, help="flavour(s) to run (default: both)")
    ap.add_argument("--jobs", type=int, default=2, help="test classes run at once (default 2)")
    ap.add_argument("--json", default="conformance.json", help="results file (default ./conformance.json)")
    ap.add_argument("--only", action="append", help="run only test ids matching this glob (repeatable)")
    ap.add_argument("--test-timeout", type=float, default=60.0, help="seconds per test (default 60)")
    ap.add_argument("--setup-timeout", type=float, default=90.0, help="extra seconds for a child's setup")
    ap.add_argument("--memory-limit", type=float, default=3.0, help="GiB a test process may use (default 3)")
    ap.add_argument("--no-rerun", action="store_true", help="do not re-run failing tests once")
    ap.add_argument("--keep-logs", help="directory to keep each child's output in")
    # child mode
    ap.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    ap.add_argument("--report-fd", type=int, help=argparse.SUPPRESS)
    ap.add_argument("tests", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(None if argv is None else list(argv))

    if args.child:
        return child_main(args.child, args.tests, args.report_fd)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")

    impls = [i for i in IMPLS if i in (args.impl or IMPLS)]
    flavours = [f for f in FLAVOURS if f in (args.flavour or FLAVOURS)]
    memory = args.memory_limit * 2**30
    limits = Limits(args.test_timeout, args.setup_timeout, exit_timeout=30.0, memory=memory)
    data: dict[str, Any] = {"runs": {}}
    if os.path.exists(args.json):
        with open(args.json) as f, contextlib.suppress(ValueError):
            data = json.load(f)
            data.setdefault("runs", {})

    workdir = tempfile.mkdtemp(prefix="fmpc-")
    os.chmod(workdir, 0o700)
    server = None
    started = time.monotonic()
    try:
        lithops_config = None
        if "lithops" in impls:
            server, lithops_config = start_lithops_redis(workdir)
        for flavour in flavours:
            classes = list_tests(flavour)
            if args.only:
                classes = {
                    c: [t for t in ids if any(fnmatch.fnmatchcase(t, p) for p in args.only)]
                    for c, ids in classes.items()
                }
                classes = {c: ids for c, ids in classes.items() if ids}
            for impl in impls:
                run = run_flavour(
                    impl,
                    flavour,
                    classes,
                    impl_env(impl, lithops_config),
                    limits,
                    args.jobs,
                    workdir,
                    rerun=not args.no_rerun,
                )
                run["when"] = time.strftime("%Y-%m-%d %H:%M:%S")
                run["only"] = args.only
                data["runs"][f"{impl}/{flavour}"] = run
                done_msg = f"{impl}/{flavour}: {run['counts']} in {run['wall_s']:.0f} s"
                print(done_msg, file=sys.stderr, flush=True)
                _write(args.json, data)
    finally:
        if server is not None:
            server.stop()
        if args.keep_logs:
            os.makedirs(args.keep_logs, exist_ok=True)
            for name in os.listdir(workdir):
                if name.endswith(".log"):
                    shutil.copy(os.path.join(workdir, name), args.keep_logs)
        shutil.rmtree(workdir, ignore_errors=True)

    text, summary = summarize(data["runs"])
    data["summary"] = summary
    data["meta"] = _meta(args, time.monotonic() - started)
    _write(args.json, data)
    print(text)
    for key, entry in summary.items():
        if entry.get("unexpected_failures"):
            print(f"\n{key}: failures not in expected_failures.py:")
            for tid in entry["unexpected_failures"]:
                print(f"  {tid}: {data['runs'][key]['tests'][tid]['outcome']}")
        if entry.get("flaky"):
            print(f"\n{key}: flaky (failed, then passed on the re-run; not counted as passes):")
            for tid in entry["flaky"]:
                print(f"  {tid}: first {data['runs'][key]['tests'][tid]['first']['outcome']}")
        if entry.get("unexpected_passes"):
            print(f"\n{key}: listed as expected failures but passed:")
            for tid in entry["unexpected_passes"]:
                print(f"  {tid}")
    print(f"\nresults: {os.path.abspath(args.json)} (run took {time.monotonic() - started:.0f} s)")
    return 0


def _meta(args: argparse.Namespace, wall: float) -> dict[str, Any]:
    versions = {"python": platform.python_version()}
    for mod in ("faasmp", "lithops"):
        with contextlib.suppress(Exception):
            versions[mod] = __import__(mod).__version__
    return {
        "versions": versions,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "jobs": args.jobs,
        "test_timeout_s": args.test_timeout,
        "last_run_wall_s": round(wall, 1),
    }


def _write(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
