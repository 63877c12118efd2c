"""faasmp.patch(): unmodified multiprocessing code runs on faasmp."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool

import faasmp
from tests import helpers


def _user_code() -> list[int]:
    # Exactly what an unmodified program does.
    import multiprocessing as mp

    with mp.Pool(2) as pool:
        return pool.map(helpers.square, range(5))


def test_patched_block_runs_on_faasmp_and_restores(default_ctx):
    stdlib_pool = multiprocessing.Pool
    stdlib_process = multiprocessing.Process
    with faasmp.patched():
        assert faasmp.is_patched()
        assert multiprocessing.Pool is faasmp.Pool
        assert multiprocessing.pool.Pool is faasmp.pool.Pool
        before = default_ctx.stats.records()
        assert _user_code() == [0, 1, 4, 9, 16]
        assert len(default_ctx.stats.records()) > len(before)  # it ran on faasmp workers
        p = multiprocessing.Process(target=helpers.noop)
        assert isinstance(p, faasmp.Process)
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert multiprocessing.get_context("spawn").get_start_method() == "spawn"
    assert not faasmp.is_patched()
    assert multiprocessing.Pool is stdlib_pool
    assert multiprocessing.Process is stdlib_process


def test_unpatch_restores_even_after_an_error():
    try:
        with faasmp.patched():
            raise KeyError("inside")
    except KeyError:
        pass
    assert not faasmp.is_patched()
    assert multiprocessing.current_process().name == "MainProcess"
    faasmp.patch()
    faasmp.patch()  # idempotent
    faasmp.unpatch()
    faasmp.unpatch()
    assert multiprocessing.cpu_count() >= 1 and not faasmp.is_patched()


def test_patch_covers_submodules_code_imports_from(default_ctx):
    import multiprocessing.managers
    import multiprocessing.sharedctypes

    import faasmp.managers
    import faasmp.sharedctypes

    with faasmp.patched():
        from multiprocessing.managers import BaseManager
        from multiprocessing.sharedctypes import RawValue, Value, copy, synchronized

        assert BaseManager is faasmp.managers.BaseManager
        v = Value("i", 5)
        twin = synchronized(copy(RawValue("i", 7)))  # stdlib-style helpers on faasmp objects
        with twin.get_lock():
            twin.value += 1
        assert twin.value == 8
        p = multiprocessing.Process(target=helpers.noop)
        p.start()
        p.join(30)
        assert v.value == 5 and p.exitcode == 0
    assert multiprocessing.sharedctypes.Value is not faasmp.sharedctypes.Value
