"""Every tutorial and reproduction notebook runs top to bottom (nbval, small mode).

Each notebook runs in its own ``pytest --nbval-lax`` subprocess with a private
TMPDIR (Lithops' localhost backend keeps its working copy there) and the
current environment's kernel.  Only cells tagged ``nbval-check-output`` have
their output compared, after the sanitizers in ``notebooks/nbval_sanitize.cfg``
(timings, addresses, pids, temp paths).

Every tutorial and every reproduction runs in the default test run, in two
groups (the reproductions that take longest, ``LONGER``, in a test of their own).

The committed notebooks are make_notebooks.py's texts executed with outputs
(``python notebooks/make_notebooks.py --execute``, notebooks/execute.py):
``test_committed_notebooks_are_make_notebooks_executed`` checks that nobody
edited one without the other, and that the outputs render on GitHub.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("nbval")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SANITIZE = NOTEBOOKS / "nbval_sanitize.cfg"
TUTORIALS = sorted((NOTEBOOKS / "tutorials").glob("*.ipynb"))
REPRODUCTIONS = sorted((NOTEBOOKS / "reproduction").glob("*.ipynb"))
#: Reproductions that take longest in small mode (about a minute together).
LONGER = {"05_storage", "07_evolution", "08_sentiment", "09_gridsearch"}


def run_nbval(
    paths: list[Path], tmp_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path), **(extra_env or {})}
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(SANITIZE),
        "--nbval-cell-timeout=300",
        "--timeout=600",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-q",
        "--durations=0",
        *map(str, paths),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)


def check(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 0, (
        f"nbval failed (exit {out.returncode}):\n{out.stdout[-6000:]}\n{out.stderr[-2000:]}"
    )
    assert " passed" in out.stdout and " failed" not in out.stdout
    print(out.stdout[-4000:])  # per-cell durations, shown with pytest -rP


def run_each(paths: list[Path], tmp_path: Path, extra_env: dict[str, str] | None = None) -> None:
    """One nbval run per notebook, each with its own TMPDIR.

    Lithops' localhost backend keeps its working copy and job files under the temp
    dir.  Kernels used to collide there: they inherited Lithops' exported session
    ID and named their executors alike ("the invocation ended before it started
    any worker"; fixed in faasmp/backends/compute.py and tested by
    tests/test_lithops_sessions.py).  Separate temp dirs also keep one notebook's
    leftovers out of the next one's run.

    The temp dirs are short (not under pytest's deep ``tmp_path``): a stdlib
    ``Manager`` in a notebook binds a unix socket under TMPDIR, and a socket
    path over 107 bytes fails, which killed its server at start (EOFError).
    """
    del tmp_path  # see the docstring: too deep for unix socket paths
    failures = []
    for nb in paths:
        tmp = Path(tempfile.mkdtemp(prefix="nb-"))
        try:
            out = run_nbval([nb], tmp, extra_env)
            try:
                check(out)
            except AssertionError as exc:
                failures.append(f"{nb.relative_to(ROOT)}: {exc}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    assert not failures, "\n\n".join(failures)


def test_notebook_inventory():
    names = {p.stem for p in TUTORIALS}
    assert {"01_getting_started", "05_cloud_backend"} <= names
    assert len(REPRODUCTIONS) == 10
    assert LONGER <= {p.stem for p in REPRODUCTIONS}
    for nb in REPRODUCTIONS:
        assert "FULL = False" in nb.read_text(), f"{nb.name}: small mode must be the default"


@pytest.mark.timeout(900)
def test_tutorials_run_under_nbval(tmp_path):
    run_each(TUTORIALS, tmp_path)


@pytest.mark.timeout(900)
def test_quick_reproductions_run_under_nbval(tmp_path):
    run_each([p for p in REPRODUCTIONS if p.stem not in LONGER], tmp_path)


@pytest.mark.timeout(900)
def test_longer_reproductions_run_under_nbval(tmp_path):
    run_each([p for p in REPRODUCTIONS if p.stem in LONGER], tmp_path)


@pytest.mark.isolated
@pytest.mark.timeout(1800)
def test_reproductions_run_with_workers_in_isolation_mode(tmp_path, isolated_redis):
    """Small mode, every kernel with FAASMP_ISOLATE=1 (docs/cloud.md, section 6)."""
    env = {
        "FAASMP_ISOLATE": "1",
        "FAASMP_REDIS_URL": isolated_redis.url,
        "FAASMP_LITHOPS_CONFIG": json.dumps({"redis": isolated_redis.storage}),
    }
    run_each(REPRODUCTIONS, tmp_path, env)


def load_executor():
    """notebooks/execute.py as a module (notebooks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("notebooks_execute", NOTEBOOKS / "execute.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebooks_are_make_notebooks_executed():
    """Each committed notebook is make_notebooks.py's, executed, with outputs GitHub renders.

    Editing a text in make_notebooks.py without regenerating (or a notebook by
    hand) fails here; so does a notebook committed without its outputs, with
    plotly JSON/JavaScript or widgets instead of a PNG, or with the volatile
    metadata the executor strips.
    """
    execute = load_executor()
    generated = execute.generator().notebooks()
    assert sorted(generated) == sorted(TUTORIALS + REPRODUCTIONS), "a notebook with no generator, or missing"
    redo = "regenerate: python notebooks/make_notebooks.py --execute"
    pngs = 0
    for path, want in generated.items():
        got = nbformat.read(path, as_version=4)
        problems = execute.differences(want, got)
        assert not problems, f"{path.name}: " + "\n".join(problems) + f"\n{redo} {path.stem}"
        pngs += sum("image/png" in out.get("data", {}) for c in got.cells for out in c.get("outputs", []))
    assert pngs >= len(REPRODUCTIONS), f"only {pngs} PNG figures in the executed notebooks"
