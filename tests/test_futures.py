"""concurrent.futures.ProcessPoolExecutor semantics on faasmp workers."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing

import pytest

import faasmp
from faasmp.futures import BrokenProcessPool, ProcessPoolExecutor
from tests import helpers


def test_submit_map_as_completed(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        futs = [ex.submit(helpers.square, i) for i in range(6)]
        assert sorted(f.result(30) for f in cf.as_completed(futs, timeout=60)) == [i * i for i in range(6)]
        assert list(ex.map(helpers.add, range(5), range(5), chunksize=2)) == [0, 2, 4, 6, 8]
        assert ex.submit(helpers.add, a=1, b=2).result(30) == 3


def test_exceptions_reach_the_future_with_remote_traceback(ctx):
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        f = ex.submit(helpers.fail_on, 3, 3)
        with pytest.raises(KeyError, match="bad item 3") as info:
            f.result(30)
        assert isinstance(info.value.__cause__, faasmp.RemoteTraceback)
        it = ex.map(helpers.fail_on, [1, 2, 3], [3, 3, 3])
        assert next(it) == 1 and next(it) == 2
        with pytest.raises(KeyError):
            next(it)


def test_dead_worker_breaks_the_executor(ctx):
    ex = ProcessPoolExecutor(1, mp_context=ctx)
    f = ex.submit(helpers.kill_self)
    with pytest.raises(BrokenProcessPool):
        f.result(60)
    with pytest.raises(BrokenProcessPool):
        ex.submit(helpers.square, 2)
    ex.shutdown(wait=False, cancel_futures=True)


def test_shutdown_semantics_and_bad_arguments(ctx):
    ex = ProcessPoolExecutor(1, mp_context=ctx)
    slow = ex.submit(helpers.sleep_then, 5.0, "x")
    queued = ex.submit(helpers.square, 3)
    ex.shutdown(wait=True, cancel_futures=True)
    assert queued.cancelled() or slow.cancelled()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(helpers.square, 1)
    with pytest.raises(ValueError):
        ProcessPoolExecutor(0, mp_context=ctx)
    with pytest.raises(TypeError, match="faasmp context"):
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    with ProcessPoolExecutor(1, mp_context=ctx) as ex2:
        with pytest.raises(ValueError, match="chunksize"):
            ex2.map(helpers.square, [1], chunksize=0)


def test_patch_swaps_concurrent_futures(default_ctx):
    with faasmp.patched():
        from concurrent.futures import ProcessPoolExecutor as Patched

        assert Patched is ProcessPoolExecutor
        with Patched(2) as ex:
            assert list(ex.map(helpers.square, range(4))) == [0, 1, 4, 9]
    assert cf.ProcessPoolExecutor is not ProcessPoolExecutor
