"""Every example is an ordinary multiprocessing program: same verified result
under ``python example.py`` and ``python -m faasmp run example.py``.

All runs start at once (a few at a time) when the module begins, so the
module costs about as long as its slowest examples, not their sum.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.timeout(300)

#: example -> lines its stdout must contain (the verified result), besides
#: being identical in both modes and exiting 0.
VERIFIED = {
    "montecarlo_pi.py": ["pi ~= 3.1421", "checksum 235661"],
    "pipeline_queues.py": ["items 200, sum of squares 2646700, expected 2646700", "exit codes [0, 0, 0, 0]"],
    "master_worker_pipes.py": [
        "theta after 15 rounds: 2.998196",
        "workers said bye: [0, 1], exit codes [0, 0]",
    ],
    "evolution_strategies.py": [
        "fitness -5.2500 -> -0.064234 after 6 generations",
        "fitness values recorded in the Manager dict: 48",
    ],
    "executor_failure.py": [
        "failed {0: 'ZeroDivisionError: task 0 has no inverse'}",
        "map [0.25, 0.5, 'map stopped: task 0 has no inverse']",
    ],
    "tqdm_process_map.py": ["total steps 215063, longest chain starts at 2919 (216 steps)"],
    "pandarallel_apply.py": ["score sum 12600, length sum 7900, rows 400"],
    "gridsearch_joblib.py": ["best params {'C': 10.0, 'gamma': 'scale'}", "best score 0.973333"],
}

MODES = {"python": [], "faasmp run": ["-m", "faasmp", "run"]}


def _run(
    example: str, mode: str, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], pathlib.Path]:
    # Each run gets its own temp dir: Lithops' localhost backend keeps its
    # jobs in a temp folder shared by every process of the user (docs/architecture.md, "Pitfalls").
    tmp = tempfile.mkdtemp(prefix="faasmp-example-")
    args = [str(EXAMPLES / example)] if example != "montecarlo_pi.py" else [str(EXAMPLES / example), "6"]
    res = subprocess.run(
        [sys.executable, *MODES[mode], *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp,
        env={**os.environ, "TMPDIR": tmp, **(extra_env or {})},
    )
    return res, pathlib.Path(tmp)


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[tuple[str, str], concurrent.futures.Future[Any]]]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        # faasmp runs first: they are the long ones.
        order = [(e, m) for m in ("faasmp run", "python") for e in VERIFIED]
        yield {key: pool.submit(_run, *key) for key in order}


def test_every_example_is_listed():
    found = sorted(p.name for p in EXAMPLES.glob("*.py") if p.name != "pi_helpers.py")
    assert found == sorted(VERIFIED)
    for name in found:  # ordinary programs: nothing of faasmp's
        assert "faasmp" not in _code_lines(EXAMPLES / name), name


def _code_lines(path: pathlib.Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if line.startswith(("import", "from")))


@pytest.mark.parametrize("example", sorted(VERIFIED))
def test_same_verified_result_under_python_and_faasmp_run(runs, example):
    plain, _ = runs[(example, "python")].result()
    faas, faas_tmp = runs[(example, "faasmp run")].result()
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert faas.returncode == 0, faas.stderr[-3000:]
    for line in VERIFIED[example]:
        assert line in plain.stdout, plain.stdout
    assert faas.stdout == plain.stdout
    # faasmp really ran the work: its Lithops executor (created only when a
    # faasmp session starts) left its folder in that run's temp dir.
    assert list(faas_tmp.glob("lithops-*")), "the program ran without starting faasmp"


@pytest.mark.isolated
@pytest.mark.parametrize("example", sorted(VERIFIED))
def test_verified_result_with_workers_in_isolation_mode(isolated_redis, example):
    """``faasmp run`` with FAASMP_ISOLATE=1: workers see none of the client's files (docs/cloud.md, 6)."""
    import json

    env = {
        "FAASMP_ISOLATE": "1",
        "FAASMP_REDIS_URL": isolated_redis.url,
        "FAASMP_LITHOPS_CONFIG": json.dumps({"redis": isolated_redis.storage}),
    }
    res, _ = _run(example, "faasmp run", env)
    assert res.returncode == 0, res.stderr[-3000:]
    for line in VERIFIED[example]:
        assert line in res.stdout, res.stdout
