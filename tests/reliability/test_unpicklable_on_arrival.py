"""Data that pickles on one side but cannot be unpickled on the other: an error, never a hang.

A value the receiver cannot rebuild (a class it cannot import, a
``__setstate__`` or reduce function that raises there) fails that one
result, task or message with an error naming it; the pool, pipe or queue
stays usable.  And a returned instance of a class the client shipped by value
leaves the client's class as it was.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

import pytest

from faasmp.pool import MaybeEncodingError, ResultUnpicklingError

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)


def _rebuild_in(creator: int) -> OnlyWhereMade:
    if os.getpid() != creator:
        raise RuntimeError(f"cannot be rebuilt outside process {creator}")
    return OnlyWhereMade()


class OnlyWhereMade:
    """Pickles everywhere; unpickles only in the process that made it."""

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_in, (os.getpid(),))


class SetstateRaises:
    """Its ``__setstate__`` raises wherever it is unpickled."""

    def __init__(self) -> None:
        self.x = 1

    def __setstate__(self, state: dict[str, object]) -> None:
        raise ValueError("setstate refuses")


def make(kind: str) -> object:
    if kind == "client-refuses":
        return OnlyWhereMade()
    if kind == "setstate":
        return SetstateRaises()
    return kind


def identity(x: object) -> object:
    return x


def test_a_result_the_client_cannot_unpickle_fails_its_task_and_the_pool_goes_on(ctx):
    with ctx.Pool(2) as pool:
        with pytest.raises(ResultUnpicklingError, match=r"result of task 1 of job \d+") as info:
            pool.map(make, ["ok", "client-refuses", "ok"], chunksize=1)
        assert isinstance(info.value, MaybeEncodingError)  # the stdlib's type for a result that cannot cross
        assert "cannot be rebuilt outside process" in str(info.value)
        assert isinstance(info.value.__cause__, RuntimeError)
        with pytest.raises(ResultUnpicklingError, match="setstate refuses"):
            pool.apply_async(make, ("setstate",)).get(timeout=60)
        assert pool.map(make, ["a", "b"]) == ["a", "b"]
        it = pool.imap(make, ["x", "client-refuses", "y"])
        assert next(it) == "x"
        with pytest.raises(ResultUnpicklingError):
            next(it)
        assert next(it) == "y"


def test_task_arguments_a_worker_cannot_unpickle_fail_that_task(ctx):
    with ctx.Pool(1) as pool:
        with pytest.raises(Exception, match="could not unpickle the arguments of task 0") as info:
            pool.apply_async(identity, (OnlyWhereMade(),)).get(timeout=60)
        assert "cannot be rebuilt outside process" in "".join(
            str(e) for e in (info.value, info.value.__cause__)
        )
        assert pool.apply(identity, (5,)) == 5


def test_a_message_the_receiver_cannot_unpickle_raises_in_recv_and_get(ctx):
    a, b = ctx.Pipe()
    a.send(SetstateRaises())
    with pytest.raises(ValueError, match="setstate refuses"):
        b.recv()
    a.send("next")
    assert b.recv() == "next"
    q = ctx.Queue()
    q.put(SetstateRaises())
    with pytest.raises(ValueError, match="setstate refuses"):
        q.get(timeout=30)
    q.put("next")
    assert q.get(timeout=30) == "next"


def test_a_process_that_its_worker_cannot_unpickle_exits_1(ctx):
    p = ctx.Process(target=identity, args=(OnlyWhereMade(),))
    p.start()
    p.join(60)
    assert p.exitcode == 1


BOX = """
    import faasmp

    G = 1

    class Box:
        def get(self):
            return G

    if __name__ == "__main__":
        with faasmp.Pool(1) as pool:
            box = pool.apply(Box)
        queue = faasmp.Queue()
        proc = faasmp.Process(target=queue.put, args=(Box(),))
        proc.start()
        queued = queue.get(timeout=60)
        proc.join(60)
        G = 2
        print(type(box) is Box, type(queued) is Box, Box().get(), box.get(), Box.get.__globals__ is globals())
"""


@pytest.mark.parametrize("how", ["script", "-c"])
def test_an_instance_of_a_client_class_shipped_by_value_leaves_the_client_class_alone(tmp_path, how):
    source = textwrap.dedent(BOX)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAASMP_")}
    env.update(TMPDIR=tempfile.mkdtemp(prefix="faasmp-box-"), PYTHONPATH=str(ROOT))
    if how == "script":
        (tmp_path / "box.py").write_text(source)
        args = [str(tmp_path / "box.py")]
    else:
        args = ["-c", source.replace('if __name__ == "__main__":', "if True:")]
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=100, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr
    # Before: "True True 1 1 False" -- the worker's copy of Box.get, with a
    # stale copy of the script's globals, had replaced the client's method.
    assert out.stdout.split() == ["True", "True", "2", "2", "True"]
