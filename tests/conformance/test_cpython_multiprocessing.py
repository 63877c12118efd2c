"""CPython's own multiprocessing tests on faasmp.

Runs ``tests/conformance/run_cpython_suite.py --impl faasmp`` and fails when a
test outside ``expected_failures.py`` fails, errors, hangs or crashes -- also
through a failing class fixture (``tearDownClass``) -- or is flaky (fails,
then passes on its re-run), so a regression in any module shows up as a named
CPython test.  Expected failures that pass are reported (prune the list), not
failed.

* By default, a fast subset: a few representative classes of each flavour
  (:data:`FAST_SUBSET`, about a minute on two cores).
* ``pytest -m conformance``: every class of both flavours (a few minutes per
  flavour on two cores; see docs/conformance.md).

The check that the expected-failure list names real tests is cheap and runs
by default.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance.expected_failures import EXPECTED_FAILURES
from tests.conformance.run_cpython_suite import FAILING, apply_class_fixtures, list_tests, merge_rerun

RUNNER = Path(__file__).with_name("run_cpython_suite.py")
#: Bound for one flavour: every test has its own 60 s limit inside the runner.
FLAVOUR_TIMEOUT = 45 * 60


#: Representative classes run by default: processes, pools, queues, pipes,
#: locks, conditions, events, shared values and manager containers.
FAST_SUBSET = {
    "processes": [
        "WithProcessesTestPool",
        "WithProcessesTestQueue",
        "WithProcessesTestConnection",
        "WithProcessesTestCondition",
        "WithProcessesTestEvent",
        "WithProcessesTestLock",
        "WithProcessesTestSemaphore",
        "WithProcessesTestValue",
        "WithProcessesTestArray",
    ],
    "manager": ["WithManagerTestContainers", "WithManagerTestLock"],
}
#: Bound for the fast subset of one flavour (each test also has the runner's 60 s limit).
SUBSET_TIMEOUT = 10 * 60


def _run_suite(
    flavour: str, out: Path, classes: list[str] | None = None, timeout: float = FLAVOUR_TIMEOUT
) -> dict:
    jobs = os.environ.get("FAASMP_CONFORMANCE_JOBS", "2")
    cmd = [sys.executable, str(RUNNER), "--impl", "faasmp", "--flavour", flavour, "--jobs", jobs]
    cmd += ["--json", str(out)]
    for cls in classes or ():
        cmd += ["--only", f"{cls}.*"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout - 60)
    assert proc.returncode == 0, f"runner failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    sys.stdout.write(proc.stdout)  # the summary table, shown with -s or on failure
    return json.loads(out.read_text())["runs"][f"faasmp/{flavour}"]


def _assert_conforms(run: dict, expected_ids: list[str]) -> None:
    """Every test got a result; none failed (or was flaky) outside the expected-failure list."""
    tests = run["tests"]
    assert sorted(tests) == sorted(expected_ids), "some tests got no result"
    unexpected = {
        t: r
        for t, r in tests.items()
        if (r["outcome"] in FAILING or r["outcome"] == "flaky") and t not in EXPECTED_FAILURES
    }
    newly_passing = sorted(t for t, r in tests.items() if r["outcome"] == "pass" and t in EXPECTED_FAILURES)
    if newly_passing:
        print(f"\nexpected failures that passed (remove them from expected_failures.py): {newly_passing}")

    def why(r: dict) -> str:
        own = f" (the test itself: {r['own_outcome']})" if r.get("own_outcome") else ""
        first = ""
        if r.get("first"):
            first = f" (first run: {r['first']['outcome']}\n{r['first']['detail'][-1500:]})"
        return f"{r['outcome']}{own}{first}\n{r['detail'][-1500:]}"

    report = "\n\n".join(f"{t}: {why(r)}" for t, r in sorted(unexpected.items()))
    assert not unexpected, f"{len(unexpected)} CPython test(s) failed on faasmp, not expected:\n{report}"


def test_expected_failures_name_real_tests() -> None:
    """Every id in the expected-failure tables names a test of this interpreter's suite."""
    known = {t for flavour in ("processes", "manager") for ids in list_tests(flavour).values() for t in ids}
    stale = sorted(set(EXPECTED_FAILURES) - known)
    assert not stale, f"expected_failures.py names tests that do not exist: {stale}"
    assert all(reason.strip() for reason in EXPECTED_FAILURES.values())


def _result(outcome: str) -> dict:
    return {"outcome": outcome, "duration": 0.1, "detail": ""}


@pytest.mark.parametrize(
    "fixture",
    [
        {"where": "tearDownClass (cpython_suite.WithManagerTestLock)", "outcome": "error", "detail": "E"},
        {"where": "setUpClass (cpython_suite.WithManagerTestLock)", "outcome": "fail", "detail": "F"},
        {"where": "exit", "outcome": "timeout", "detail": "killed after its tests"},  # a hang at exit
        {"where": "exit", "outcome": "crash", "detail": "process used 4 GiB"},
    ],
)
def test_a_failing_class_fixture_fails_the_class_passes(fixture: dict) -> None:
    results = {"C.a": _result("pass"), "C.b": _result("skip"), "C.c": _result("fail")}
    counted = apply_class_fixtures(results, [fixture])
    assert counted["C.a"]["outcome"] == "error" and counted["C.a"]["own_outcome"] == "pass"
    assert fixture["where"] in counted["C.a"]["detail"] and fixture["detail"] in counted["C.a"]["detail"]
    assert counted["C.b"] == results["C.b"] and counted["C.c"] == results["C.c"]  # skip and fail unchanged


def test_a_skipped_class_fixture_fails_nothing() -> None:
    results = {"C.a": _result("pass")}
    skipped = {"where": "setUpClass", "outcome": "skip", "detail": "requires fork"}
    assert apply_class_fixtures(results, [skipped]) == results


def test_a_pass_on_the_rerun_is_flaky_not_a_pass() -> None:
    flaky = merge_rerun(_result("fail"), _result("pass"))
    assert flaky["outcome"] == "flaky" and flaky["first"]["outcome"] == "fail"
    again = merge_rerun(_result("timeout"), _result("error"))
    assert again["outcome"] == "timeout" and again["rerun"] == "error"


@pytest.mark.conformance
@pytest.mark.timeout(FLAVOUR_TIMEOUT)
@pytest.mark.parametrize("flavour", ["processes", "manager"])
def test_faasmp_passes_cpython_suite(flavour: str, tmp_path: Path) -> None:
    run = _run_suite(flavour, tmp_path / "conformance.json")
    _assert_conforms(run, [t for ids in list_tests(flavour).values() for t in ids])


@pytest.mark.timeout(SUBSET_TIMEOUT)
@pytest.mark.parametrize("flavour", ["processes", "manager"])
def test_faasmp_passes_a_fast_subset_of_the_cpython_suite(flavour: str, tmp_path: Path) -> None:
    classes = FAST_SUBSET[flavour]
    listed = list_tests(flavour)
    assert set(classes) <= set(listed), f"no such classes: {sorted(set(classes) - set(listed))}"
    run = _run_suite(flavour, tmp_path / "conformance.json", classes, timeout=SUBSET_TIMEOUT)
    _assert_conforms(run, [t for cls in classes for t in listed[cls]])
