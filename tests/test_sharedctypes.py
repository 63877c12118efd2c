"""Value / Array / RawValue / RawArray: ctypes semantics, locally and remotely.

Every test runs with segments in host shared memory and in the DSM (``ctx`` below).
"""

from __future__ import annotations

import ctypes
import pickle
import threading

import cloudpickle
import pytest

from faasmp import sharedctypes
from faasmp.runtime import dsm
from faasmp.synchronize import Lock, RLock
from tests import helpers_sync


@pytest.fixture
def ctx(shm_ctx):
    """Both shared-memory modes (see SHM_PARAMS in conftest)."""
    return shm_ctx


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double)]


class Flags(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint, 3), ("b", ctypes.c_uint, 5)]


# --- the acceptance test ----------------------------------------------------------


def test_value_incremented_by_four_remote_processes_under_its_lock(ctx):
    v = ctx.Value("i", 0)
    procs = [ctx.Process(target=helpers_sync.increment, args=(v, 200)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert v.value == 800


def test_value_shared_with_pool_workers(ctx):
    v = ctx.Value("d", 0.0)
    with ctx.Pool(2) as pool:
        results = pool.starmap(helpers_sync.add_to_value, [(v, 0.5)] * 10)
    assert v.value == 5.0
    assert sorted(results) == [0.5 * i for i in range(1, 11)]


# --- Value / RawValue -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "init", "new"),
    [
        ("i", 7, -3),
        ("d", 1.5, 2.25),
        ("c", b"x", b"y"),
        ("b", -5, 100),
        ("B", 200, 255),
        ("h", -300, 300),
        ("l", 2**40, -(2**40)),
        ("q", -(2**60), 2**60),
        ("f", 0.5, 0.25),
        (ctypes.c_bool, True, False),
        (ctypes.c_int, 3, 4),
    ],
)
def test_value_types_round_trip(ctx, code, init, new):
    v = ctx.Value(code, init)
    assert v.value == init
    v.value = new
    assert v.value == new
    raw = ctx.RawValue(code)
    assert raw.value == sharedctypes._resolve_type(code)().value  # zero-initialised


def test_value_behaves_like_ctypes(ctx):
    v = ctx.Value("i", 0)
    v.value = 2**32 + 5  # ctypes wraps silently
    assert v.value == 5
    with pytest.raises(TypeError):
        v.value = "nope"
    assert repr(v) == "<Synchronized wrapper for c_int(5)>"
    assert repr(v.get_obj()) == "c_int(5)"
    assert isinstance(v.get_lock(), RLock)
    assert v.acquire() and v.acquire(False)  # recursive
    v.release()
    v.release()
    with v:
        v.value += 1
    assert v.value == 6


def test_lock_argument(ctx):
    raw = ctx.Value("i", 1, lock=False)
    assert isinstance(raw, ctypes.c_int)  # a real ctypes object, as the stdlib's
    assert not hasattr(raw, "get_lock")
    lock = ctx.Lock()
    v = ctx.Value("i", 1, lock=lock)
    assert v.get_lock() is lock
    assert isinstance(ctx.Value("i", lock=None).get_lock(), RLock)
    with pytest.raises(AttributeError, match="3 has no method 'acquire'"):
        ctx.Value("i", 0, lock=3)
    with pytest.raises(AttributeError, match="has no method 'acquire'"):
        ctx.Array("i", 3, lock="yes")


def test_bad_typecodes(ctx):
    for bad in ("z", "ii", 3, object):
        with pytest.raises(TypeError, match="this type has no size"):
            ctx.RawValue(bad)
    with pytest.raises(TypeError, match="pointer"):
        ctx.Value(ctypes.c_char_p)
    with pytest.raises(TypeError):
        ctx.Value("i", "not an int")
    with pytest.raises(ValueError):
        ctx.RawArray("i", -1)


def test_structure_value_fields(ctx):
    p = ctx.Value(Point, 1, 2.5)
    assert (p.x, p.y) == (1, 2.5)
    p.y = 7
    p.x += 1
    assert (p.x, p.y) == (2, 7.0)
    raw = ctx.RawValue(Point, 3, 4)
    raw.x = 9
    assert (raw.x, raw.y) == (9, 4.0)
    with pytest.raises(AttributeError):
        raw.z  # noqa: B018
    flags = ctx.Value(Flags, 5, 17)  # bit fields: read-modify-write under the lock
    flags.b = 3
    assert (flags.a, flags.b) == (5, 3)


# --- Array / RawArray -------------------------------------------------------------------------


def test_array_indexing_slicing_like_ctypes(ctx):
    a = ctx.Array("i", range(10))
    ref = (ctypes.c_int * 10)(*range(10))
    assert len(a) == 10
    for key in (
        0,
        -1,
        3,
        slice(2, 5),
        slice(None, None, 3),
        slice(None, None, -2),
        slice(8, 2, -3),
        slice(5, 5),
    ):
        assert a[key] == ref[key], key
    assert list(a) == list(range(10))
    a[1:3] = [100, 200]
    ref[1:3] = [100, 200]
    a[::2] = [0] * 5
    ref[::2] = [0] * 5
    a[-1] = -9
    ref[-1] = -9
    assert a[:] == ref[:]
    with pytest.raises(ValueError, match="Can only assign sequence of same size"):
        a[1:3] = [1]
    with pytest.raises(IndexError, match="invalid index"):
        a[10]
    with pytest.raises(IndexError):
        a[-11] = 1
    with pytest.raises(TypeError):
        a["x"]
    assert 100 in a and 200 not in a


def test_array_of_doubles_and_zero_length(ctx):
    a = ctx.RawArray("d", 4)
    assert a[:] == [0.0] * 4
    a[:] = [1, 2.5, True, -1e300]
    assert a[:] == [1.0, 2.5, 1.0, -1e300]
    empty = ctx.Array("i", 0)
    assert len(empty) == 0 and empty[:] == [] and list(empty) == []


def test_char_array_value_and_raw(ctx):
    c = ctx.Array("c", 8)
    assert isinstance(c, sharedctypes.SynchronizedString)
    c.value = b"hello"
    assert c.value == b"hello"
    assert c.raw == b"hello\x00\x00\x00"
    assert c[0] == b"h" and c[1:3] == b"el"
    c.raw = b"xy"
    assert c.value == b"xyllo"
    with pytest.raises(ValueError, match="byte string too long"):
        c.value = b"123456789"
    raw = ctx.RawArray("c", b"abc")
    assert raw.raw == b"abc" and raw.value == b"abc"
    w = ctx.RawArray("u", 4)
    w.value = "hé"
    assert w.value == "hé"
    with pytest.raises(AttributeError):
        ctx.RawArray("i", 2).value  # noqa: B018


def test_array_of_structures(ctx):
    a = ctx.Array(Point, [(1, 2), (3, 4)])
    assert (a[1].x, a[1].y) == (3, 4.0)
    a[0] = Point(5, 6)
    assert [(p.x, p.y) for p in a] == [(5, 6.0), (3, 4.0)]


def test_synchronized_access_waits_for_another_holder(ctx):
    a = ctx.Array("i", 3)
    lock = a.get_lock()
    seen = []
    lock.acquire()
    t = threading.Thread(target=lambda: seen.append(a[0]))
    t.start()
    t.join(0.3)
    assert t.is_alive() and seen == []  # blocked: the lock is held elsewhere
    a.get_obj()[0] = 42  # raw access ignores the lock
    lock.release()
    t.join(10)
    assert seen == [42]


def test_copy_and_synchronized(ctx):
    raw = ctx.RawArray("i", [1, 2, 3])
    dup = sharedctypes.copy(raw)
    dup[0] = 9
    assert raw[:] == [1, 2, 3] and dup[:] == [9, 2, 3]
    val = sharedctypes.copy(ctx.RawValue("d", 2.5))
    assert val.value == 2.5
    wrapped = sharedctypes.synchronized(raw, ctx.Lock())
    assert isinstance(wrapped, sharedctypes.SynchronizedArray) and isinstance(wrapped.get_lock(), Lock)
    with pytest.raises(AssertionError, match="already synchronized"):
        sharedctypes.synchronized(wrapped)


def test_copy_of_any_ctypes_object(ctx):
    foo = Point(2, 5)
    bar = sharedctypes.copy(foo, ctx=ctx)  # the stdlib copies any ctypes object
    foo.x = foo.y = 0
    assert (bar.x, bar.y) == (2, 5)
    assert sharedctypes.copy(ctypes.c_double(2.5), ctx=ctx).value == 2.5
    arr = sharedctypes.copy((ctypes.c_int * 3)(1, 2, 3), ctx=ctx)
    assert isinstance(arr, ctypes.Array) and arr[:] == [1, 2, 3]
    synced = sharedctypes.copy(ctx.Value("i", 7))  # a synchronized object: a raw copy
    assert isinstance(synced, ctypes.c_int) and synced.value == 7
    out = ctx.RawValue("d", 0)
    p = ctx.Process(target=helpers_sync.read_struct, args=([bar], out))
    p.start()
    p.join(60)
    assert p.exitcode == 0 and out.value == 7  # the copy is shared with remote code
    with pytest.raises(TypeError, match="ctypes object or a faasmp shared"):
        sharedctypes.copy([1, 2])


def test_pickled_copies_share_data_and_released_data_errors(ctx):
    a = ctx.Array(Point, 2)
    copy = pickle.loads(cloudpickle.dumps(a))
    copy[1] = Point(7, 8)
    assert a[1].y == 8.0
    assert sharedctypes.segment_of(copy) is sharedctypes.segment_of(a)  # one local copy per process
    blob = cloudpickle.dumps(a)
    seg = sharedctypes.segment_of(a)
    seg.handle._release()  # the owner deletes the data (as when its object is garbage collected)
    dsm.REGISTRY.forget(seg.key)  # ... and this process stops syncing it, like a process that never had it
    with pytest.raises(RuntimeError, match="gone"):
        pickle.loads(blob)


# --- remote ---------------------------------------------------------------------------------------


def test_remote_processes_write_disjoint_slices(ctx):
    arr = ctx.Array("q", 8, lock=False)
    procs = [
        ctx.Process(target=helpers_sync.fill_array, args=(arr, i * 4, [i * 10 + k for k in range(4)]))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert arr[:] == [0, 1, 2, 3, 10, 11, 12, 13]


def test_structure_array_read_remotely(ctx):
    points = ctx.RawArray(Point, [(1, 0.5), (2, 0.25)])
    out = ctx.Value("d", 0.0)
    p = ctx.Process(target=helpers_sync.read_struct, args=(points, out))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert out.value == 3.75


def test_data_key_has_a_ttl_and_is_deleted_with_its_owner(ctx):
    import gc  # noqa: PLC0415

    v = ctx.Value("i", 1)
    arr = ctx.RawArray("d", 3)
    arr[0] = 1.0
    keys = [sharedctypes.segment_of(v).key, v.get_lock().key("m"), sharedctypes.segment_of(arr).key]
    redis_client = ctx.session.state._r  # the test inspects Redis directly
    assert all(0 < redis_client.pttl(k) <= ctx.config.key_ttl * 1000 for k in keys)
    del v, arr
    gc.collect()
    assert redis_client.exists(*keys) == 0


def test_a_zero_filled_array_is_not_built_locally_first(shm_ctx):
    """``RawArray(typecode, n)`` needs only its type: a zeroed local ctypes array
    of n elements, made and dropped, cost a 20 MB array ~9 ms."""
    import tracemalloc

    n = 1_000_000  # 4 MB of int32
    shm_ctx.RawArray("i", 1)  # first-use imports and setup, outside the trace
    tracemalloc.start()
    try:
        arr = shm_ctx.RawArray("i", n)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(arr) == n and arr[n - 1] == 0
    size = 4 * n
    # A host segment is a mapping, not Python memory; a DSM segment keeps a
    # local copy and the twin its writes are diffed against.
    limit = size // 4 if shm_ctx.session.host_memory is not None else 2 * size + size // 2
    assert peak < limit, f"RawArray('i', {n:,}) allocated {peak:,} bytes of Python memory on the way"
