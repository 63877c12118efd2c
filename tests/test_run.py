"""`faasmp run`: an unmodified program behaves as under `python`, but on faasmp."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
    # Each program gets its own temp dir: Lithops' localhost backend keeps its
    # jobs in a temp folder shared by every process of the user (docs/architecture.md, "Pitfalls"),
    # and this test's parent runs Lithops jobs of its own at the same time.
    tmp = tempfile.mkdtemp(prefix="faasmp-run-test-")
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "TMPDIR": tmp},
    )


def test_example_gives_the_same_result_under_python_and_faasmp_run():
    script = str(ROOT / "examples" / "montecarlo_pi.py")
    plain = _run(script, "6")
    faas = _run("-m", "faasmp", "run", script, "6")
    assert plain.returncode == faas.returncode == 0, faas.stderr
    assert plain.stdout == faas.stdout
    assert "checksum" in faas.stdout


def test_argv_exit_code_stderr_and_that_it_really_ran_on_faasmp(tmp_path):
    (tmp_path / "prog.py").write_text(
        textwrap.dedent(
            """
            import multiprocessing, sys

            def where(_):
                return multiprocessing.current_process().name

            if __name__ == "__main__":
                with multiprocessing.Pool(1) as p:
                    print(type(p).__module__, p.map(where, [0]))
                print("args", sys.argv[1:])
                print("to stderr", file=sys.stderr)
                sys.exit(7)
            """
        )
    )
    res = _run("-m", "faasmp", "run", "prog.py", "a", "--flag", cwd=tmp_path)
    assert res.returncode == 7, res.stderr
    assert "faasmp.pool ['ForkPoolWorker-1']" in res.stdout
    assert "args ['a', '--flag']" in res.stdout
    assert "to stderr" in res.stderr


def test_missing_script_and_uncaught_exception(tmp_path):
    res = _run("-m", "faasmp", "run", str(tmp_path / "nope.py"))
    assert res.returncode == 2 and "can't open file" in res.stderr
    (tmp_path / "boom.py").write_text("raise ValueError('top-level boom')\n")
    res = _run("-m", "faasmp", "run", "boom.py", cwd=tmp_path)
    assert res.returncode == 1 and "ValueError: top-level boom" in res.stderr
