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
