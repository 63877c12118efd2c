"""Child processes that inherit a faasmp client's environment get their own Lithops jobs.

Lithops exports its session ID and executor counter into ``os.environ``; before
faasmp gave every executor a fresh session, each child of a faasmp client (a
``faasmp run`` program, a notebook kernel, a benchmark) named its executor like
its siblings, shared their job files in a common temp dir and could read a
sibling's finished status as its own: "the invocation ended before it started
any worker".
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import os, faasmp
    if __name__ == "__main__":
        with faasmp.Pool(2) as p:
            total = sum(p.map(abs, range(10)))  # workers started: the executor exists
            print(os.environ["__LITHOPS_SESSION_ID"], total)
    """
)


def test_children_sharing_a_temp_dir_get_distinct_lithops_sessions(ctx, tmp_path):
    with ctx.Pool(1) as p:  # the parent's executor exports its session to children
        assert p.map(abs, [-1]) == [1]
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # one temp dir for all children
    sessions = []
    for _ in range(3):
        r = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=100, env=env, cwd=tmp_path
        )
        assert r.returncode == 0, r.stderr
        assert "ended before it started" not in r.stderr, r.stderr
        session, total = r.stdout.split()
        assert total == "45"
        sessions.append(session)
    assert len(set(sessions)) == 3, sessions


EXECUTOR = textwrap.dedent(
    """
    import os, sys
    from lithops.constants import LITHOPS_TEMP_DIR
    from faasmp.backends.compute import LithopsCompute
    from faasmp.config import Config

    def absolute(x):
        return abs(x)


    compute = LithopsCompute(Config())
    copy = os.path.join(LITHOPS_TEMP_DIR, "lithops")
    result = compute.call(absolute, (-3,), timeout=60) if "--call" in sys.argv else 3
    print(os.stat(copy).st_ino, result)
    """
)


def _new_program(script, env, *args):
    r = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=100, env=env
    )
    assert r.returncode == 0, r.stderr
    inode, result = r.stdout.split()
    assert result == "3"
    return int(inode)


def test_a_new_program_keeps_lithops_identical_package_copy(tmp_path):
    """Lithops' localhost backend copies its package per process; an identical copy is kept.

    Without the reuse every program's first executor replaced the copy
    (rmtree + move: a new directory) at ~80-95 ms, and its invocations
    compiled Lithops from source again.
    """
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    first = _new_program(script, env)
    assert _new_program(script, env, "--call") == first, "the second program copied Lithops again"


def test_a_lithops_copy_that_differs_is_replaced_fault_injected(tmp_path):
    """A copy missing a file (injected) has another fingerprint: Lithops copies afresh, and it works."""
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    first = _new_program(script, env)
    (copy,) = [p for p in tmp_path.glob("lithops-*/lithops") if p.is_dir()]
    victim = copy / "version.py"
    victim.unlink()
    assert _new_program(script, env, "--call") != first, "a damaged copy was kept"
    assert victim.is_file()
