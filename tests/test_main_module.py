"""The client's main module in workers, as the spawn start method gives it (issue 14, item 2).

A function pickled *by reference* to ``__main__`` (plain pickle, dill,
pandarallel) must resolve in a worker: the worker re-runs the client's script
as ``__mp_main__`` (aliased as ``__main__``), without its
``if __name__ == "__main__":`` block; in a notebook it gets the kernel's
top-level definitions.  Everything runs on real workers: ``faasmp run`` or
``python script.py`` in a subprocess, and a real IPython kernel.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(300)


def _run(*args: str, cwd: pathlib.Path, **extra: str) -> subprocess.CompletedProcess[str]:
    # Each program gets its own TMPDIR: Lithops' localhost backend keeps its
    # jobs in a temp folder shared by every process of the user.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAASMP_")}
    env.update(TMPDIR=tempfile.mkdtemp(prefix="faasmp-main-test-"), PYTHONPATH=str(ROOT), **extra)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=240, cwd=cwd, env=env
    )


def _write(path: pathlib.Path, source: str) -> pathlib.Path:
    path.write_text(textwrap.dedent(source))
    return path


BY_REFERENCE = """
    import multiprocessing, os, pickle, sys
    import dill

    # Runs in the client and, as __mp_main__, once in each worker that takes work.
    with open(os.environ["MARKS"], "a") as marks:
        marks.write(f"top {__name__}\\n")

    OFFSET = 100

    def score(t):
        return t * 10 + OFFSET

    class Scaler:
        def __init__(self, k):
            self.k = k

        def __call__(self, t):
            return self.k * score(t)

    def load_pickled(blob):
        return pickle.loads(blob)(3)

    def load_dilled(blob):
        return dill.loads(blob)(4)

    def process_target(blobs, q):
        q.put([pickle.loads(blobs[0])(5), dill.loads(blobs[1])(6)])

    if __name__ == "__main__":
        with open(os.environ["MARKS"], "a") as marks:
            marks.write("main block\\n")
        with multiprocessing.Pool(2) as pool:
            print("pickle", pool.map(load_pickled, [pickle.dumps(score), pickle.dumps(Scaler(2))]))
            print("dill", pool.map(load_dilled, [dill.dumps(lambda t: score(t) + 1)] * 2))
            # An object of the worker's __mp_main__ comes back as the client's own class.
            back = pool.apply(load_pickled, (pickle.dumps(Scaler),))
            print("back", type(back) is Scaler, back.k)
        q = multiprocessing.Queue()
        blobs = (pickle.dumps(score), dill.dumps(lambda t: score(t) + 2))
        p = multiprocessing.Process(target=process_target, args=(blobs, q))
        p.start()
        print("process", q.get(timeout=120))
        p.join(120)
        print("exitcode", p.exitcode)
"""


def test_functions_pickled_by_reference_to_main_resolve_in_pool_and_process_workers(tmp_path):
    _write(tmp_path / "byref.py", BY_REFERENCE)
    marks = tmp_path / "marks"
    res = _run("-m", "faasmp", "run", "byref.py", cwd=tmp_path, MARKS=str(marks))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    # plain pickle: a top-level function and an instance of a top-level class, by reference
    assert "pickle [130, 260]" in lines, res.stdout + res.stderr
    # dill: a lambda whose globals are __main__'s (pandarallel's case)
    assert "dill [141, 141]" in lines, res.stdout + res.stderr
    assert "back True 3" in lines, res.stdout + res.stderr
    # a Process target in a forked child of a worker
    assert "process [150, 162]" in lines and "exitcode 0" in lines, res.stdout + res.stderr


def test_main_block_runs_once_and_top_level_code_runs_as_mp_main_in_workers(tmp_path):
    _write(tmp_path / "byref.py", BY_REFERENCE)
    marks = tmp_path / "marks"
    res = _run("-m", "faasmp", "run", "byref.py", cwd=tmp_path, MARKS=str(marks))
    assert res.returncode == 0, res.stderr
    seen = marks.read_text().splitlines()
    assert seen.count("main block") == 1, seen
    assert seen.count("top __main__") == 1, seen  # the client
    # Each worker slot that took work re-ran the top level once, as __mp_main__
    # (a Pool(2) and a Process on a warm pool: 1 to 3 slots), never per task.
    assert 1 <= seen.count("top __mp_main__") <= 3, seen
    assert len(seen) == 2 + seen.count("top __mp_main__"), seen


PREFETCH = """
    import multiprocessing, os, time

    # Each slot that re-runs this top level as __mp_main__ marks it with its pid.
    with open(os.environ["MARKS"], "a") as marks:
        marks.write(f"top {__name__} {os.getpid()}\\n")

    def pid(_):
        return os.getpid()

    def marked():
        with open(os.environ["MARKS"]) as marks:
            return [line.split()[2] for line in marks if line.startswith("top __mp_main__")]

    if __name__ == "__main__":
        import faasmp

        faasmp.start_warm_pool(2)  # waits until both slots are up
        print("before any work", len(marked()))
        with multiprocessing.Pool(2) as pool:
            pool.map(pid, range(2))
        # The pool's workers ran on slots that had the main module already:
        # their first task re-ran nothing.
        print("after the pool", len(marked()))
"""


def test_warm_slots_install_the_main_script_before_their_first_call(tmp_path):
    """spawn's Pool workers import the main module at start: warm slots do it before taking work."""
    _write(tmp_path / "prefetch.py", PREFETCH)
    marks = tmp_path / "marks"
    res = _run("-m", "faasmp", "run", "prefetch.py", cwd=tmp_path, MARKS=str(marks))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    # Both slots ran the top level while the client waited for them, before any call.
    assert "before any work 2" in lines, res.stdout + res.stderr
    # ... and not again at their first call (a slot keeps one install per main module).
    assert "after the pool 2" in lines, res.stdout + res.stderr


PATCHED_AFTER_WARM = """
    import sys
    from multiprocessing import Lock  # bound when the top level runs

    def which(_):
        return sys.modules["__mp_main__"].Lock.__module__

    if __name__ == "__main__":
        import faasmp

        faasmp.start_warm_pool(1)  # the slot installs this script unpatched
        faasmp.patch()
        with faasmp.Pool(1) as pool:
            print("Lock from", pool.map(which, [0]))
"""


def test_a_main_installed_before_the_first_call_is_installed_again_under_the_calls_patch(tmp_path):
    """The slot re-runs the script when the call's patch state differs from the prefetch's."""
    _write(tmp_path / "patched_late.py", PATCHED_AFTER_WARM)
    res = _run("patched_late.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    # As without the early install: the worker's top level bound the patched multiprocessing.
    assert "Lock from ['faasmp.context']" in res.stdout.splitlines(), res.stdout + res.stderr


def test_plain_python_script_and_a_module_run_with_dash_m(tmp_path):
    # `python script.py` that uses faasmp directly (no `faasmp run`).
    _write(
        tmp_path / "direct.py",
        """
        import pickle
        import faasmp

        def triple(t):
            return 3 * t

        def load(blob):
            return pickle.loads(blob)(7)

        if __name__ == "__main__":
            with faasmp.Pool(1) as pool:
                print("direct", pool.apply(load, (pickle.dumps(triple),)))
        """,
    )
    res = _run("direct.py", cwd=tmp_path)
    assert res.returncode == 0 and "direct 21" in res.stdout, res.stdout + res.stderr
    # `faasmp run -m pkg.mod`: the module re-runs in the worker with its package,
    # and its top-level import of a neighbour works there too.
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    _write(pkg / "helper.py", "def base():\n    return 40\n")
    _write(
        pkg / "mod.py",
        """
        import multiprocessing, pickle
        from .helper import base

        def plus_base(t):
            return base() + t

        def load(blob):
            return pickle.loads(blob)(2)

        if __name__ == "__main__":
            with multiprocessing.Pool(1) as pool:
                print("module", pool.apply(load, (pickle.dumps(plus_base),)), __spec__.name)
        """,
    )
    res = _run("-m", "faasmp", "run", "-m", "pkg.mod", cwd=tmp_path)
    assert res.returncode == 0 and "module 42 pkg.mod" in res.stdout, res.stdout + res.stderr


def test_a_failing_top_level_is_reported_naming_the_script_and_by_value_work_goes_on(tmp_path):
    _write(
        tmp_path / "needs_local_file.py",
        """
        import multiprocessing, pickle

        def early(t):
            return t + 1

        if __name__ != "__main__":  # in a worker: the file is not there
            raise FileNotFoundError("input.csv is only on the client")

        def late(t):
            return t + 2

        def load(blob):
            return pickle.loads(blob)(1)

        if __name__ == "__main__":
            with multiprocessing.Pool(1) as pool:
                print("early", pool.apply(load, (pickle.dumps(early),)))
                try:
                    pool.apply(load, (pickle.dumps(late),))
                except AttributeError as exc:
                    print("late missing:", exc)
        """,
    )
    res = _run("-m", "faasmp", "run", "needs_local_file.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "early 2" in res.stdout, res.stdout + res.stderr
    assert "late missing: Can't get attribute 'late' on <module '__mp_main__'" in res.stdout
    err = res.stderr
    assert "could not re-run the main module, script" in err and "needs_local_file.py" in err, err
    assert "FileNotFoundError: input.csv is only on the client" in err
    # The report starts at the script's own frame and shows its source line.
    assert 'raise FileNotFoundError("input.csv is only on the client")' in err
    assert "main_module.py" not in err


def test_an_unguarded_script_gets_spawns_bootstrapping_error_in_workers_not_endless_workers(tmp_path):
    _write(
        tmp_path / "unguarded.py",
        """
        import multiprocessing

        def square(x):
            return x * x

        with multiprocessing.Pool(2) as pool:
            print("squares", pool.map(square, range(4)))
        """,
    )
    res = _run("-m", "faasmp", "run", "unguarded.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    # The client's pool ran (by value, as before); each worker that re-ran the
    # script refused to start a pool of its own, as spawn's children do.
    assert res.stdout.count("squares [0, 1, 4, 9]") == 1, res.stdout + res.stderr
    assert "has finished its bootstrapping phase" in res.stderr, res.stderr
    assert "if __name__ == '__main__':" in res.stderr


NOTEBOOK_CELLS = {
    "defs": """
        import pickle, dill
        import faasmp

        OFFSET = 100

        def score(t):
            return t * 10 + OFFSET

        class Scaler:
            def __init__(self, k):
                self.k = k

            def __call__(self, t):
                return self.k * score(t)

        def load_pickled(blob):
            return pickle.loads(blob)(3)

        def load_dilled(blob):
            return dill.loads(blob)(4)
        """,
    "pool": """
        with faasmp.Pool(2) as pool:
            print("pickle", pool.map(load_pickled, [pickle.dumps(score), pickle.dumps(Scaler(2))]))
            print("dill", pool.map(load_dilled, [dill.dumps(lambda t: score(t) + 1)] * 2))
        """,
    # A later cell changes the namespace: new workers get the new definitions.
    "changed": """
        OFFSET = 1000

        def score(t):
            return -t - OFFSET

        with faasmp.Pool(1) as pool:
            print("changed", pool.apply(load_pickled, (pickle.dumps(score),)))
        """,
    # Stdlib code in a %%faas cell, with a Process whose target loads by reference.
    "magic": """
        %load_ext faasmp_magics
        """,
    "faas": """
        %%faas
        import multiprocessing

        def put_loaded(blob, q):
            q.put(pickle.loads(blob)(5))

        q = multiprocessing.Queue()
        p = multiprocessing.Process(target=put_loaded, args=(pickle.dumps(Scaler(3)), q))
        p.start()
        print("faas process", q.get(timeout=120))
        p.join(120)
        """,
    "end": "faasmp.shutdown()",
}


def test_notebook_cell_definitions_resolve_by_reference_in_workers(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(textwrap.dedent(src).strip(), id=cell_id)
        for cell_id, src in NOTEBOOK_CELLS.items()
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAASMP_")}
    env.update(
        TMPDIR=tempfile.mkdtemp(prefix="faasmp-main-kernel-"),
        PYTHONPATH=str(ROOT),
        FAASMP_IDLE_TIMEOUT="30",
        FAASMP_HEARTBEAT_INTERVAL="0.5",
    )
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    asyncio.run(_execute(client, env))
    out = {c.id: "".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in nb.cells}
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert "pickle [130, 260]" in out["pool"], out
    assert "dill [141, 141]" in out["pool"], out
    assert "changed -1003" in out["changed"], out
    assert "faas process -3015" in out["faas"], out  # the later score, via module globals


async def _execute(client, env):
    async with client.async_setup_kernel(env=env):
        for index, cell in enumerate(client.nb.cells):
            await client.async_execute_cell(cell, index)


def test_pandarallel_lambda_calling_a_top_level_function_under_faasmp_run(tmp_path):
    # The example: pandarallel pickles the lambda with dill, whose
    # globals are __main__'s; `score` must exist in the worker's __main__.
    pytest.importorskip("pandas")
    pytest.importorskip("pandarallel")
    _write(
        tmp_path / "sentiment.py",
        """
        import pandas as pd
        from pandarallel import pandarallel

        POSITIVE = {"good", "great", "fine"}

        def score(text):
            return sum(word in POSITIVE for word in text.split())

        if __name__ == "__main__":
            pandarallel.initialize(nb_workers=2, progress_bar=False, verbose=0, use_memory_fs=False)
            texts = pd.Series(["good day", "great good fine", "bad", "fine"] * 50)
            scores = texts.parallel_apply(lambda t: score(t))
            assert scores.tolist() == texts.map(score).tolist()
            print("sum", int(scores.sum()))
        """,
    )
    res = _run("-m", "faasmp", "run", "sentiment.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "sum 250" in res.stdout, res.stdout + res.stderr


def test_a_worker_without_the_clients_files_imports_the_scripts_neighbours_from_shipped_source(tmp_path):
    # A worker on another machine has neither the script nor the modules next
    # to it.  Emulated here: once the client has started work (and read its
    # files), the script deletes its helper module from disk; a worker that
    # starts after that (a second one, needed because both tasks wait for each
    # other at a Barrier) re-runs the script's `import helpers` from the shipped
    # source.
    _write(tmp_path / "helpers.py", "def base():\n    return 40\n")
    _write(
        tmp_path / "uses_helpers.py",
        """
        import multiprocessing, os, pickle, shutil
        import helpers

        def plus_base(t):
            return helpers.base() + t

        def load(blob, barrier):
            barrier.wait(120)  # both tasks run at once, so on two workers
            return pickle.loads(blob)(2)

        if __name__ == "__main__":
            with multiprocessing.Pool(1) as pool:
                print("first", pool.apply(pickle.loads, (pickle.dumps(plus_base),))(0))
            os.remove(helpers.__file__)
            shutil.rmtree("__pycache__", ignore_errors=True)
            barrier = multiprocessing.Barrier(2)
            with multiprocessing.Pool(2) as pool:
                blob = pickle.dumps(plus_base)
                print("shipped", pool.starmap(load, [(blob, barrier)] * 2))
        """,
    )
    res = _run("-m", "faasmp", "run", "uses_helpers.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "first 40" in res.stdout and "shipped [42, 42]" in res.stdout, res.stdout + res.stderr
    assert "could not re-run" not in res.stderr, res.stderr
