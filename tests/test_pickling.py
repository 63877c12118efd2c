"""Shipped code keeps its file name and source lines, whatever cloudpickle version is installed.

cloudpickle 3.1.3 started to set ``co_filename = "<dynamic-code>"`` on every
function it pickles by value, which silently removed file names and source
lines from remote tracebacks.  faasmp's Pickler reduces code objects itself;
these tests round-trip functions through *fresh interpreters* (no linecache,
no copy of a notebook cell) with the newest cloudpickle installed and with
the oldest one the dependency range allows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import cloudpickle
import pytest

from faasmp.runtime import pickling

#: The oldest cloudpickle pyproject.toml allows ("cloudpickle>=3").
OLDEST_CLOUDPICKLE = "3.0.0"

# Run in a fresh interpreter: defines one function in a notebook-like cell
# (a file name that is not on disk, its source only in linecache, as IPython
# does) and one in a real script file, and writes their faasmp pickle.
_DUMP = textwrap.dedent(
    """
    import linecache, sys
    import cloudpickle
    from faasmp.runtime import pickling
    cell = "def from_cell(x):\\n    y = x + 1\\n    raise ValueError(f'cell-boom {y}')\\n"
    name = "<notebook-cell-7>"
    linecache.cache[name] = (len(cell), None, cell.splitlines(True), name)
    ns = {"__name__": "__main__"}
    exec(compile(cell, name, "exec"), ns)
    script = sys.argv[2]
    ns2 = {"__name__": "__main__"}
    exec(compile(open(script).read(), script, "exec"), ns2)
    sys.stdout.write(cloudpickle.__version__)
    open(sys.argv[1], "wb").write(pickling.dumps([ns["from_cell"], ns2["from_script"]]))
    """
)

# Run in another fresh interpreter: calls both functions and prints their tracebacks.
_LOAD = textwrap.dedent(
    """
    import pickle, sys, traceback
    for f in pickle.load(open(sys.argv[1], "rb")):
        try:
            f(1)
        except ValueError:
            traceback.print_exc(file=sys.stdout)
    """
)

_SCRIPT = "import os\n\n\ndef from_script(x):\n    raise ValueError('script-boom')  # the line\n"


def _round_trip(
    tmp_path: Path, extra_path: str | None = None, remove_script: bool = False
) -> tuple[str, str]:
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra_path, env.get("PYTHONPATH", "")]))
    script = tmp_path / "user_script.py"
    script.write_text(_SCRIPT)
    blob = tmp_path / "funcs.pkl"
    run = {"env": env, "capture_output": True, "text": True, "timeout": 60, "check": True}
    version = subprocess.run([sys.executable, "-c", _DUMP, str(blob), str(script)], **run).stdout
    if remove_script:  # the worker is on another machine: the script is not there
        script.unlink()
    out = subprocess.run([sys.executable, "-c", _LOAD, str(blob)], **run).stdout
    return version, out


def _assert_real_sources(out: str) -> None:
    assert '"<dynamic-code>"' not in out
    assert 'File "<notebook-cell-7>", line 3, in from_cell' in out
    assert "raise ValueError(f'cell-boom {y}')" in out  # the cell's source line, shipped
    assert 'user_script.py", line 5, in from_script' in out
    assert "raise ValueError('script-boom')  # the line" in out


def test_file_name_and_source_lines_survive_the_newest_cloudpickle(tmp_path):
    version, out = _round_trip(tmp_path)
    assert version == cloudpickle.__version__
    _assert_real_sources(out)


def test_source_lines_reach_a_worker_without_the_file(tmp_path):
    _, out = _round_trip(tmp_path, remove_script=True)
    _assert_real_sources(out)


def test_file_name_and_source_lines_survive_the_oldest_allowed_cloudpickle(tmp_path):
    target = tmp_path / "oldest"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         f"cloudpickle=={OLDEST_CLOUDPICKLE}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, f"could not install cloudpickle {OLDEST_CLOUDPICKLE}: {install.stderr}"
    version, out = _round_trip(tmp_path, extra_path=str(target))
    assert version == OLDEST_CLOUDPICKLE
    _assert_real_sources(out)


def test_code_objects_round_trip_every_field():
    def outer(a, *, b=2):
        def inner(c):
            return a + b + c

        return inner(3)

    clone = pickle_round_trip(outer)
    assert clone(1) == 6
    assert clone.__code__.co_filename == outer.__code__.co_filename
    assert clone.__code__.co_firstlineno == outer.__code__.co_firstlineno
    nested = next(c for c in clone.__code__.co_consts if isinstance(c, types.CodeType))
    assert nested.co_filename == outer.__code__.co_filename  # nested code objects too


def test_a_payload_that_is_not_code_is_refused():
    import marshal
    import pickle

    with pytest.raises(pickle.UnpicklingError, match="expected a code object, got tuple"):
        pickling._load_code(marshal.dumps((1, 2)), None)


def pickle_round_trip(obj):
    import pickle

    return pickle.loads(pickling.dumps(obj))
