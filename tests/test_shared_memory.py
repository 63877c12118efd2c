"""Shared memory that numpy can use: local buffers kept coherent at synchronisation points.

Each test names the mechanism it depends on; with that mechanism switched
off it fails (see docs/shared_memory.md for the guarantees).  Tests of
behaviour run with segments in host shared memory and in the DSM (``ctx``
below); tests of the DSM's own mechanism force the DSM (``dsm_ctx``).
"""

from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import time
import tracemalloc

import numpy as np
import pytest
import redis

from faasmp import sharedctypes
from faasmp.runtime import dsm
from faasmp.shared_memory import ShareableList, SharedMemory
from tests import helpers_shm


@pytest.fixture
def ctx(shm_ctx):
    """The behaviour tests run in both modes: host shared memory and the DSM (see SHM_PARAMS)."""
    return shm_ctx


def test_raw_objects_are_real_ctypes_objects_with_the_buffer_protocol(ctx):
    arr = ctx.RawArray("d", 4)
    assert isinstance(arr, ctypes.Array) and arr._type_ is ctypes.c_double and len(arr) == 4
    view = np.frombuffer(arr)
    view[:] = [1, 2, 3, 4]
    assert arr[:] == [1.0, 2.0, 3.0, 4.0]  # the view and the ctypes object share memory
    assert memoryview(arr).format == "<d" and memoryview(arr).nbytes == 32
    assert np.ctypeslib.as_array(arr).tolist() == [1.0, 2.0, 3.0, 4.0]
    locked = ctx.Array("i", [5, 6])
    assert np.frombuffer(locked.get_obj(), dtype=np.int32).tolist() == [5, 6]
    value = ctx.RawValue("d", 2.5)
    assert isinstance(value, ctypes.c_double) and np.frombuffer(value).tolist() == [2.5]
    assert repr(value) == "c_double(2.5)"


def test_numpy_views_written_by_children_are_read_by_the_parent_after_join(ctx):
    """Mechanism: the end of a process is a release, join an acquire."""
    arr = ctx.RawArray("d", 1000)
    view = np.frombuffer(arr)  # created before the children write
    procs = [
        ctx.Process(target=helpers_shm.fill_view, args=(arr, i * 250, (i + 1) * 250, i + 1.0))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert view.tolist() == [1.0] * 250 + [2.0] * 250 + [3.0] * 250 + [4.0] * 250


def test_a_view_created_before_the_writes_sees_them_after_a_pipe_message(ctx):
    """Mechanism: send is a release, recv an acquire (the child is still running)."""
    arr = ctx.Array("d", 100)
    view = np.frombuffer(arr.get_obj())
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=helpers_shm.fill_then_send, args=(arr, child_end, 10, 60))
    p.start()
    try:
        assert parent_end.poll(90), "the child never reported"
        assert parent_end.recv() == "written"
        assert view[10:60].tolist() == list(range(10, 60))
        assert view[:10].tolist() == [0.0] * 10 and view[60:].tolist() == [0.0] * 40
    finally:
        parent_end.send("exit")
        p.join(60)
    assert p.exitcode == 0


def test_writes_before_a_barrier_are_seen_by_every_party_after_it(ctx):
    """Mechanism: Barrier.wait is a release then an acquire."""
    arr = ctx.RawArray("d", 3)
    view = np.frombuffer(arr)
    barrier = ctx.Barrier(3)
    out = ctx.Queue()
    procs = [ctx.Process(target=helpers_shm.fill_at_barrier, args=(arr, barrier, i, out)) for i in range(2)]
    for p in procs:
        p.start()
    view[2] = 3.0
    barrier.wait(90)
    assert view.tolist() == [1.0, 2.0, 3.0]
    sums = [out.get(timeout=60), out.get(timeout=60)]
    barrier.wait(60)
    for p in procs:
        p.join(60)
    assert sums == [6.0, 6.0]
    assert [p.exitcode for p in procs] == [0, 0]


def test_pool_tasks_write_into_a_raw_array_passed_through_the_initializer(ctx):
    """Mechanism: a task's end is a release, its result an acquire."""
    arr = ctx.RawArray("q", 20)
    view = np.frombuffer(arr, dtype=np.int64)
    with ctx.Pool(2, initializer=helpers_shm.keep_array, initargs=(arr,)) as pool:
        assert sorted(pool.map(helpers_shm.square_into_array, range(20), chunksize=3)) == list(range(20))
        assert view.tolist() == [i * i for i in range(20)]
        # A second round through the same workers' copies (an acquire at task start).
        view[:] = 0
        pool.map(helpers_shm.square_into_array, range(0, 20, 2), chunksize=2)
    assert view.tolist() == [i * i if i % 2 == 0 else 0 for i in range(20)]


def test_shared_memory_attached_by_name_from_pool_tasks(ctx):
    shm = SharedMemory(create=True, size=64 * 4, ctx=ctx)
    try:
        view = np.ndarray((64,), dtype=np.int32, buffer=shm.buf)
        with ctx.Pool(2) as pool:
            pool.starmap(helpers_shm.write_shm, [(shm.name, i) for i in range(64)], chunksize=8)
        assert view.tolist() == list(range(1, 65))
        del view
    finally:
        shm.close()
        shm.unlink()


def _sort_parts_in_children(ctx, n: int, parts: int, seed: int, timeout: float):
    """Children each sort one part of a RawArray in place through numpy views; (data, parent's view).

    Checks every child exited 0 and every part, seen through the view the
    parent made before the children wrote, is sorted after the joins.
    """
    data = np.random.default_rng(seed).integers(-(2**31), 2**31 - 1, n, dtype=np.int32)
    arr = ctx.RawArray("i", n)
    view = np.frombuffer(arr, dtype=np.int32)
    view[:] = data
    bounds = [n * k // parts for k in range(parts + 1)]
    procs = [
        ctx.Process(target=helpers_shm.sort_part, args=(arr, lo, hi)) for lo, hi in itertools.pairwise(bounds)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    assert [p.exitcode for p in procs] == [0] * parts
    for lo, hi in itertools.pairwise(bounds):
        assert np.array_equal(view[lo:hi], np.sort(data[lo:hi]))
    return data, view


def test_parallel_in_place_sort_of_5m_int32(ctx):
    _sort_parts_in_children(ctx, 5_000_000, 2, seed=15, timeout=120)


@pytest.mark.slow
def test_parallel_in_place_sort_of_40m_int32_in_4_parts_then_merged_in_place(ctx):
    """A bigger sort (160 MB): 4 children each sort a quarter in place, the parent merges in place.

    Each child's release ships its quarter (changed elements only) and the
    parent's join pulls them; nothing else may change.
    """
    data, view = _sort_parts_in_children(ctx, 40_000_000, 4, seed=16, timeout=600)
    view.sort(kind="stable")
    assert np.array_equal(view, np.sort(data))


def test_disjoint_writes_to_one_page_by_two_processes_both_survive(ctx):
    """Mechanism: a release ships only the bytes that changed (multiple writers per page)."""
    arr = ctx.RawArray("B", 4096)
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=helpers_shm.write_every_other_byte, args=(arr, k, barrier)) for k in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    assert [p.exitcode for p in procs] == [0, 0]
    assert bytes(arr) == bytes([100, 101]) * 2048


def test_an_acquire_keeps_the_bytes_this_process_has_not_released_yet(ctx):
    """Mechanism: pulled ranges do not overwrite the puller's own unreleased writes."""
    arr = ctx.RawArray("B", 4096)
    event = ctx.Event()
    evens = ctx.Process(target=helpers_shm.write_evens_then_wait, args=(arr, event))
    evens.start()
    odds = ctx.Process(target=helpers_shm.write_odds_then_set, args=(arr, event))
    odds.start()
    for p in (evens, odds):
        p.join(90)
    assert [evens.exitcode, odds.exitcode] == [0, 0]
    assert bytes(arr) == bytes([100, 101]) * 2048


def test_diff_ships_exact_runs_or_a_mask_and_merge_keeps_local_writes():
    """The diff and merge functions on their own (numpy path and the pure-Python path)."""
    twin = bytearray(200_000)
    mem = bytearray(twin)
    mem[5] = 1
    mem[70_000:70_010] = b"x" * 10
    rng = np.random.default_rng(0)
    dense = rng.integers(0, 256, 60_000, dtype=np.uint8).tobytes()
    mem[100_000:160_000] = dense
    for make in (dsm.make_diff, dsm._diff_python):
        old = bytearray(twin)
        diff = make(mem, old)
        assert diff is not None and old == mem  # the twin now matches what is shipped
        assert (5, 1) in diff.exact and (70_000, 10) in diff.exact
        shipped = sum(length for _, length in diff.exact) + sum(length for _, length in diff.masked)
        assert shipped < 70_000  # never the whole object
        assert make(mem, old) is None
    # Apply the diff to another copy that has its own unreleased write in the region.
    other_twin = bytearray(twin)
    other = bytearray(twin)
    other[100_001] = 7  # written locally, not released
    diff = dsm.make_diff(mem, bytearray(twin))
    assert diff is not None
    pulled = b"".join(bytes(mem[s : s + n]) for s, n in diff.logged)
    dsm.merge(other, other_twin, diff.logged, pulled)
    expected = bytearray(mem)
    expected[100_001] = 7
    assert other == expected and other_twin == mem


def test_a_diff_of_one_long_run_holds_one_copy_of_it():
    """Mechanism: a sorted slice (one run) is shipped as a view of the diff's snapshot.

    The diff used to list every changed 8-byte word (8 bytes of index per
    word) and copy the run twice more (the snapshot, then bytes to ship):
    a child of the sort_views benchmark spent 7-8 ms of CPU on its 5 MB.
    """
    n = 8 << 20
    twin = bytearray(np.random.default_rng(6).integers(0, 256, 4 * n, dtype=np.uint8).tobytes())
    mem = bytearray(twin)
    np.frombuffer(mem, dtype=np.int32)[n // 4 : n // 2].sort()  # 8 MB of 32 MB
    changed = n
    tracemalloc.start()
    try:
        diff = dsm.make_diff(mem, twin, 4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert diff is not None and twin == mem
    assert diff.nbytes >= changed - 64 and len(diff.exact) <= 3
    assert peak < 1.8 * changed, f"the diff held {peak / changed:.1f} copies of the changed bytes at once"


def test_diff_and_merge_without_numpy_give_the_same_bytes(monkeypatch):
    """The pure-Python path (numpy is optional): same result, exact runs only."""
    rng = np.random.default_rng(5)
    twin = bytearray(rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    mem = bytearray(twin)
    for i in rng.choice(20_000, 300, replace=False):
        mem[i] = (mem[i] + 1) % 256
    with_numpy = dsm.make_diff(mem, bytearray(twin))
    monkeypatch.setattr(dsm, "_numpy", lambda: None)
    old = bytearray(twin)
    diff = dsm.make_diff(mem, old)
    assert diff is not None and with_numpy is not None and old == mem
    assert not diff.masked and sum(n for _, n in diff.exact) == 300
    other, other_twin = bytearray(twin), bytearray(twin)
    other[7] ^= 0xFF  # an unreleased local write
    pulled = b"".join(bytes(mem[s : s + n]) for s, n in diff.logged)
    dsm.merge(other, other_twin, diff.logged, pulled)
    expected = bytearray(mem)
    expected[7] = other[7]
    assert other == expected and other_twin == mem


def test_shared_memory_semantics_follow_the_stdlib(ctx):
    with pytest.raises(ValueError, match="positive"):
        SharedMemory(create=True, size=0, ctx=ctx)
    with pytest.raises(ValueError, match="can only be None"):
        SharedMemory(ctx=ctx)
    with pytest.raises(FileNotFoundError):
        SharedMemory("faasmp_no_such_block", ctx=ctx)
    shm = SharedMemory("/faasmp_test_block", create=True, size=10, ctx=ctx)
    try:
        assert shm.name == "faasmp_test_block" and shm.size == 10 and len(shm.buf) == 10
        with pytest.raises(FileExistsError):
            SharedMemory("faasmp_test_block", create=True, size=10, ctx=ctx)
        other = SharedMemory("faasmp_test_block", ctx=ctx)
        shm.buf[:3] = b"abc"
        assert bytes(other.buf[:3]) == b"abc"  # one local copy per process
        view = np.ndarray((10,), dtype=np.uint8, buffer=other.buf)
        other.close()
        assert other.buf is None
        assert bytes(view[:3]) == b"abc"  # views made before close() keep the local copy alive
    finally:
        shm.close()
        shm.unlink()
    with pytest.raises(FileNotFoundError):
        shm.unlink()
    with pytest.raises(FileNotFoundError):
        SharedMemory("faasmp_test_block", ctx=ctx)


def test_shareable_list_and_manager_in_the_default_context(default_ctx):
    from faasmp.managers import SharedMemoryManager  # noqa: PLC0415

    with SharedMemoryManager() as smm:
        sl = smm.ShareableList([1, 2.5, "text", b"raw", None, True])
        assert list(sl) == [1, 2.5, "text", b"raw", None, True]
        again = ShareableList(name=sl.shm.name)
        again[0] = 42
        assert sl[0] == 42 and sl.count(42) == 1 and sl.index("text") == 2
        block = smm.SharedMemory(16)
        name = block.name
        assert SharedMemory(name).size == 16
    with pytest.raises(FileNotFoundError):  # unlinked at shutdown
        SharedMemory(name)


def test_shared_memory_manager_blocks_are_shared_and_unlinked_at_shutdown(ctx):
    """The manager's blocks in either mode (the default context's test above runs in host mode only)."""
    from faasmp.managers import SharedMemoryManager  # noqa: PLC0415

    with SharedMemoryManager(ctx=ctx) as smm:
        block = smm.SharedMemory(256)
        with ctx.Pool(1) as pool:
            assert pool.apply(helpers_shm.write_shm, (block.name, 3)) == 3
        assert np.ndarray((64,), dtype=np.int32, buffer=block.buf)[3] == 4  # the result is an acquire
        name = block.name
    with pytest.raises(FileNotFoundError):  # unlinked at shutdown
        SharedMemory(name, ctx=ctx)


def test_a_block_created_by_a_worker_is_attached_by_name_in_the_parent(ctx):
    """The block outlives its creator's close() and is found by name from another process."""
    with ctx.Pool(1) as pool:
        assert pool.apply(helpers_shm.create_shm, ("faasmp_made_by_a_worker",)) == 16
    shm = SharedMemory("faasmp_made_by_a_worker", ctx=ctx)
    try:
        assert bytes(shm.buf[:9]) == b"made here" and shm.size == 16
    finally:
        shm.close()
        shm.unlink()


def test_patch_routes_multiprocessing_shared_memory():
    import multiprocessing.managers  # noqa: PLC0415
    import multiprocessing.shared_memory  # noqa: PLC0415

    import faasmp  # noqa: PLC0415
    from faasmp import managers, shared_memory  # noqa: PLC0415

    with faasmp.patched():
        assert multiprocessing.shared_memory.SharedMemory is shared_memory.SharedMemory
        assert multiprocessing.shared_memory.ShareableList is shared_memory.ShareableList
        assert multiprocessing.managers.SharedMemoryManager is managers.SharedMemoryManager
    assert multiprocessing.shared_memory.SharedMemory is not shared_memory.SharedMemory
    assert isinstance(multiprocessing.shared_memory.SharedMemory, type)


def test_segment_of_finds_the_segment_of_raw_and_synchronized_objects(ctx):
    arr = ctx.Array("i", 3)
    seg = sharedctypes.segment_of(arr)
    assert seg is not None and seg is sharedctypes.segment_of(arr.get_obj())
    assert sharedctypes.segment_of(ctypes.c_int(1)) is None
    assert multiprocessing.get_start_method(allow_none=True) in (None, "fork", "spawn", "forkserver")


def test_a_counter_in_a_buffer_wrapper_under_a_lock_counts_every_increment(ctx):
    """As CPython's Barrier tests count arrivals. Mechanism: lock acquire/release synchronise."""
    wrapper = sharedctypes.BufferWrapper(4, ctx=ctx)
    lock = ctx.Lock()
    procs = [ctx.Process(target=helpers_shm.count_in_buffer, args=(wrapper, lock, 20)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert wrapper.create_memoryview().cast("i")[0] == 60
    with pytest.raises(OverflowError, match="out of range"):
        sharedctypes.BufferWrapper(-1, ctx=ctx)


def test_writes_through_an_object_dropped_before_the_release_still_travel(ctx):
    """Mechanism: a segment garbage collected with unreleased writes is shipped at the next release."""
    arr = ctx.RawArray("d", 8)
    p = ctx.Process(target=helpers_shm.write_then_drop, args=([arr],))
    p.start()
    p.join(90)
    assert p.exitcode == 0
    assert np.frombuffer(arr).tolist() == [7.0] * 8


def _copies(ctx, size, count):
    """*count* registries (as many processes' views) attached to one new segment of *size* bytes."""
    arr = ctx.RawArray("B", size)
    seg = sharedctypes.segment_of(arr)
    regs = [dsm.Registry() for _ in range(count)]
    segs = [r.attach(seg.handle) for r in regs]
    return arr, regs, segs


def test_a_pull_of_many_scattered_changes_by_two_writers_merges_both_and_keeps_local_bytes(dsm_ctx):
    """Mechanism: a span fetched for many ranges is merged keeping the puller's unreleased bytes."""
    ctx = dsm_ctx  # the DSM's own mechanism
    arr, (a, b, c), (sa, sb, sc) = _copies(ctx, 1 << 20, 3)
    rng = np.random.default_rng(7)
    # Interleaved scattered 8-byte elements: a writes even picks, b odd ones
    # (thousands of ranges: too many for the pull script to merge itself).
    picks = np.sort(rng.choice(1 << 17, 4000, replace=False))
    va, vb, vc = (np.frombuffer(s.mem, dtype=np.float64) for s in (sa, sb, sc))
    va[picks[0::2]] = 1.0
    vb[picks[1::2]] = 2.0
    vc[picks[:50]] = 3.0  # c's own unreleased writes, overlapping both writers' ranges
    a.release()
    b.release()
    c.acquire()
    expected = np.zeros(1 << 17)
    expected[picks[0::2]] = 1.0
    expected[picks[1::2]] = 2.0
    mine = expected.copy()
    mine[picks[:50]] = 3.0
    assert np.array_equal(vc, mine)
    assert c.pulls == 1
    a.acquire()
    assert np.array_equal(va, expected)
    assert bytes(arr) == bytes(1 << 20)  # the creator has not acquired yet


def test_a_pull_of_few_changes_far_apart_fetches_the_ranges_not_their_span(dsm_ctx):
    """Mechanism: a second-round-trip pull fetches the span only when the ranges are dense."""
    ctx = dsm_ctx  # the DSM's own mechanism
    size = 16 << 20
    _, (a, b), (sa, sb) = _copies(ctx, size, 2)
    places = np.arange(0, size, size // 300)[:300]
    np.frombuffer(sa.mem, dtype=np.uint8)[places] = 9
    a.release()
    b.acquire()
    assert sb.mem == sa.mem
    assert b.bytes_pulled < 64 * 1024, b.bytes_pulled  # not the ~16 MB between the first and the last


@pytest.mark.parametrize("many", [False, True], ids=["merged-in-lua", "merged-by-the-puller"])
def test_ranges_whose_packed_bytes_look_like_separators_travel_intact(dsm_ctx, many):
    """Ranges travel packed (8-byte start, 8-byte length): any byte value is data, not a separator.

    Offsets 32 (a space), 44 (a comma), 58 (a colon) and 0x2020 start with
    bytes that a text parser of the log entry ("<version> <writer> <ranges>")
    would take for separators.
    """
    ctx = dsm_ctx  # the DSM's own mechanism
    _, (a, b), (sa, sb) = _copies(ctx, 1 << 16, 2)
    places = [32, 44, 58, 0x2020, 0x3A2C]
    if many:  # over the pull script's budget: the puller merges the ranges itself
        places += list(range(1024, 1024 + 300 * 97, 97))
    va = np.frombuffer(sa.mem, dtype=np.uint8)
    va[places] = 0x20
    a.release()
    b.acquire()
    assert sb.mem == sa.mem
    assert np.flatnonzero(np.frombuffer(sb.mem, dtype=np.uint8)).tolist() == sorted(places)


def test_an_attach_receives_the_segment_straight_into_its_local_copy(dsm_ctx):
    """Mechanism: the attach reads the bytes from the socket into the local buffer.

    Through the parser a 20 MB attach held three copies at once (the parser's
    bytes, the buffer, the twin) and cost 50 ms of CPU per child of the sort;
    now two (the buffer and its twin).
    """
    ctx = dsm_ctx  # the DSM's own mechanism
    size = 8 << 20
    arr = ctx.RawArray("B", size)
    np.frombuffer(arr, dtype=np.uint8)[:] = np.random.default_rng(3).integers(0, 256, size, dtype=np.uint8)
    dsm.release()
    seg = sharedctypes.segment_of(arr)
    other = dsm.Registry()
    tracemalloc.start()
    try:
        copy = other.attach(seg.handle)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert copy is not None and copy.mem == seg.mem and copy.twin == seg.mem
    assert peak < 2.5 * size, f"the attach held {peak / size:.1f} copies of the segment at once"


def test_string_replies_read_into_buffers_keep_their_order_nulls_and_errors(dsm_ctx):
    """The raw reader behind attaches and pulls: RESP bulk strings of any size, in order."""
    ctx = dsm_ctx  # the DSM's own mechanism
    direct = ctx.session.state.direct
    key = ctx.session.keys.k("test", "bulk")
    big = np.random.default_rng(4).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    direct.execute_many([("SET", key, big), ("SET", f"{key}:small", b"a\r\nb")])
    got = direct.execute_bulk(
        [("GET", f"{key}:small"), ("GET", key), ("GET", f"{key}:missing"), ("GETRANGE", key, 5, 9)]
    )
    assert got == [b"a\r\nb", big, None, big[5:10]]
    assert all(type(g) is bytearray for g in got if g is not None)
    direct.execute("RPUSH", f"{key}:list", b"x")
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        direct.execute_bulk([("GET", f"{key}:list"), ("GET", f"{key}:small")])
    assert direct.execute("GET", f"{key}:small") == b"a\r\nb"  # the connection is still in step
    # A deferred reply outstanding: read first, then ours (by the parser if it took their bytes).
    replies: list = []
    direct.send_deferred(replies.append, "GET", key)
    assert direct.execute_bulk([("GET", f"{key}:small"), ("GET", key)]) == [b"a\r\nb", big]
    assert replies == [big]
    direct.execute("DEL", key, f"{key}:small", f"{key}:list")


def test_a_forked_child_gets_its_own_writer_id_and_fresh_copies(dsm_ctx):
    """Mechanism: the registry's reset after fork (faasmp forks a slot to run each Process).

    Sharing the parent's writer id, the child's pushes would be logged as
    the parent's own and skipped by the parent's pulls.
    """
    ctx = dsm_ctx  # the DSM's own mechanism
    import os
    import pickle

    arr = ctx.RawArray("d", 1024)
    np.frombuffer(arr)[:] = 1.0
    dsm.release()
    blob = pickle.dumps(arr)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        ok = False
        try:
            inherited = sharedctypes.segment_of(arr)
            ok = not dsm.REGISTRY.live() and inherited is not None and not inherited.synced
            mine = pickle.loads(blob)  # attaches afresh, as a Process's arguments do
            np.frombuffer(mine)[10:20] = 7.0
            dsm.release()
        finally:
            os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child still held the parent's copies"
    dsm.acquire()
    expected = np.ones(1024)
    expected[10:20] = 7.0
    assert np.array_equal(np.frombuffer(arr), expected)


def test_a_lock_pulls_after_its_try_when_the_memory_lives_in_another_redis(external_server):
    """The pull rides behind a lock's try only on the lock's own connection.

    With the segment in another context's Redis, a pull sent "behind" the
    held try would go out first, on the other connection, and could read
    data older than the lock's last release: the acquire must take the lock,
    then pull (and a release must push, and wait, before releasing).
    """
    from faasmp.context import FaasContext  # noqa: PLC0415
    from tests.conftest import TEST_SETTINGS  # noqa: PLC0415

    ctx_a = FaasContext(**TEST_SETTINGS, shared_memory="dsm")
    ctx_b = FaasContext(redis_url=external_server.url, **TEST_SETTINGS, shared_memory="dsm")
    try:
        lock = ctx_a.Lock()
        arr = ctx_b.RawArray("i", 4)
        assert dsm.active() and not dsm.active(lock._session.state)
        order: list[str] = []
        sem = lock._redis
        store = next(s for s in dsm.REGISTRY._stores.values() if s._state is ctx_b.session.state)

        def spy(name, real):
            def call(*args, **kwargs):
                order.append(name)
                return real(*args, **kwargs)

            return call

        sem.sem_try = spy("try", sem.sem_try)
        sem.sem_release = spy("release", sem.sem_release)
        sem.sem_release_later = spy("release", sem.sem_release_later)  # this thread holds it
        store.pull = spy("pull", store.pull)
        store.push = spy("push (waited)", store.push)
        with lock:
            arr[0] = 7
        assert order == ["try", "pull", "push (waited)", "release"]
        with lock:
            assert arr[0] == 7
    finally:
        ctx_b.shutdown()
        ctx_a.shutdown()


def test_a_lock_used_after_its_context_shut_down_does_not_start_a_new_run():
    """A library's lock used at exit (tqdm's monitor thread did) must not start a server again.

    The shared-memory check of an acquire looks at the lock's own state,
    not at its context's session, which would start a new run.
    """
    from faasmp.context import FaasContext  # noqa: PLC0415
    from tests.conftest import TEST_SETTINGS  # noqa: PLC0415

    ctx = FaasContext(**TEST_SETTINGS, shared_memory="dsm")
    lock = ctx.Lock()
    arr = ctx.RawArray("i", 4)  # the process holds shared memory (in Redis): acquires pull
    with lock:
        arr[0] = 1
    first = ctx.session
    ctx.shutdown()
    with pytest.raises(Exception):  # noqa: B017 - whatever a closed run's lock raises
        lock.acquire(timeout=5)
    assert first.closed and ctx._session in (None, first), "the lock started a new run"


def test_results_that_arrive_together_cost_one_pull_for_the_batch(dsm_ctx, monkeypatch):
    """Mechanism: the result handler pulls once per popped batch, not once per result.

    The first result's callback holds the handler thread (callbacks run there,
    as the stdlib's do) until the other results wait in Redis, so that one pop
    takes them all.  Each task wrote into the shared array
    before its result, and the parent sees every write after ``get()``.
    """
    ctx = dsm_ctx  # the DSM's own mechanism
    from faasmp.backends.redis.pool import PoolResultsQueue
    from faasmp.runtime.dsm import REGISTRY

    takes: list[int] = []
    real_take = PoolResultsQueue.take

    def counted_take(self: PoolResultsQueue, timeout: float) -> list[bytes]:
        blobs = real_take(self, timeout)
        if blobs:
            takes.append(len(blobs))
        return blobs

    monkeypatch.setattr(PoolResultsQueue, "take", counted_take)
    arr = ctx.RawArray("q", 10)
    view = np.frombuffer(arr, dtype=np.int64)
    with ctx.Pool(2, initializer=helpers_shm.keep_array, initargs=(arr,)) as pool:
        pool.map(helpers_shm.square_into_array, range(2))  # the workers are up: their start messages came
        state, key = pool._session.state, pool._results_key
        held = []

        def hold_the_first(_: object) -> None:
            if not held:
                held.append(True)
                # Until the other results wait: 9 of them, fewer if this pop took some
                # (then the count stops growing for a second).
                deadline, last, since = time.monotonic() + 30, -1, time.monotonic()
                while time.monotonic() < deadline:
                    n = state.llen(key)
                    if n >= 9 or (n and n == last and time.monotonic() - since > 1.0):
                        break
                    if n != last:
                        last, since = n, time.monotonic()
                    time.sleep(0.01)

        takes.clear()
        before = REGISTRY.pulls
        results = [
            pool.apply_async(helpers_shm.square_into_array, (i,), callback=hold_the_first) for i in range(10)
        ]
        assert sorted(r.get(60) for r in results) == list(range(10))
        pulled = REGISTRY.pulls - before
    assert view.tolist() == [i * i for i in range(10)]
    assert max(takes) >= 3, f"no pop took several results: {takes}"
    assert pulled <= len(takes), f"{pulled} pulls for {len(takes)} pops of {sum(takes)} messages"
