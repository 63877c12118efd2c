"""Managers: proxies to dicts, lists, namespaces and custom objects kept in Redis."""

from __future__ import annotations

import pickle
import re
import threading
import time

import cloudpickle
import pytest

import faasmp
from faasmp import sharedctypes
from faasmp.managers import (
    AutoProxy,
    BaseManager,
    DictProxy,
    ListProxy,
    ManagerShutdownError,
    Namespace,
    NamespaceProxy,
    SyncManager,
    ValueProxy,
)
from faasmp.runtime.call import AuthenticationError
from tests import helpers_managers as hm


@pytest.fixture
def manager(ctx):
    with ctx.Manager() as m:
        yield m


def _exists(ctx, *keys):
    return ctx.session.state.exists(*keys)


# --- dict ---------------------------------------------------------------------


def test_dict_mapping_api_follows_dict(manager):
    d = manager.dict({"a": 1}, b=2)
    assert isinstance(d, DictProxy)
    d["c"] = [1, 2]
    d[7] = "seven"
    assert d["a"] == 1 and d["c"] == [1, 2] and d[7] == "seven"
    assert len(d) == 4
    assert "a" in d and "zz" not in d
    assert d.keys() == ["a", "b", "c", 7]  # lists, in insertion order
    assert d.values() == [1, 2, [1, 2], "seven"]
    assert d.items() == [("a", 1), ("b", 2), ("c", [1, 2]), (7, "seven")]
    assert list(d) == ["a", "b", "c", 7]
    assert list(reversed(d)) == [7, "c", "b", "a"]
    assert d.get("a") == 1 and d.get("zz") is None and d.get("zz", 5) == 5
    d["a"] = 10  # overwriting keeps the position
    assert d.keys()[0] == "a" and d["a"] == 10
    assert d.setdefault("a", 99) == 10
    assert d.setdefault("new", 3) == 3 and d["new"] == 3
    assert d.pop("b") == 2 and d.pop("b", "gone") == "gone"
    assert d.popitem() == ("new", 3)  # LIFO like dict
    del d[7]
    d.update({"x": 1}, y=2)
    d.update([("z", 3)])
    copy = d.copy()
    assert type(copy) is dict
    assert copy == {"a": 10, "c": [1, 2], "x": 1, "y": 2, "z": 3}
    assert d == copy and dict(d) == copy
    assert str(d) == repr(copy)
    assert repr(d).startswith("<DictProxy object, typeid 'dict' at ")
    assert d._callmethod("__getitem__", ("x",)) == 1
    d.clear()
    assert len(d) == 0 and d.copy() == {}


def test_dict_errors_match_dict(manager):
    d = manager.dict()
    with pytest.raises(KeyError, match="missing"):
        d["missing"]
    with pytest.raises(KeyError):
        del d["missing"]
    with pytest.raises(KeyError):
        d.pop("missing")
    with pytest.raises(KeyError, match="dictionary is empty"):
        d.popitem()
    with pytest.raises(TypeError, match="unhashable type: 'list'"):
        d[[1, 2]] = 1
    with pytest.raises(TypeError, match="unhashable"):
        d[(1, [2])] = 1
    with pytest.raises(TypeError, match="unhashable"):
        [1] in d  # noqa: B015 - the membership test itself raises, as with a dict
    with pytest.raises(ValueError, match="element #0 has length 3"):
        d.update([(1, 2, 3)])
    with pytest.raises(TypeError, match="element #0 to a sequence"):
        d.update([1])
    with pytest.raises(faasmp.PicklingFailed, match="value for key 'lock'"):
        d["lock"] = threading.Lock()
    with pytest.raises(AttributeError, match="not in exposed"):
        d._callmethod("__class__")
    assert len(d) == 0


def test_dict_keys_of_every_hashable_kind_round_trip(manager):
    keys = [
        "text",
        "",
        "ünïcödé",
        0,
        -5,
        10**40,
        b"\x00bytes",
        None,
        True,
        False,
        1.5,
        float("inf"),
        (1, "a", (2.0, None)),
        (),
        frozenset({"x", "y", 3}),
        hm.Color.RED,
        ("x", "x"),
    ]
    d = manager.dict()
    for i, k in enumerate(keys):
        d[k] = i
    assert len(d) == len(keys)
    assert d.keys() == keys
    for i, k in enumerate(keys):
        assert d[k] == i
    # Equal keys built differently hit the same field (no pickle memo effects).
    assert d[("".join(["x"]), "x")] == len(keys) - 1
    assert d[frozenset({3, "y", "x"})] == 14
    # Documented difference: keys are matched by type and value.
    d[1] = "int"
    d[1.0] = "float"
    assert d[1] == "int" and d[1.0] == "float" and d[True] == 8


def test_setdefault_is_atomic_across_threads(manager):
    d = manager.dict()
    results: list[object] = []
    barrier = threading.Barrier(8)

    def race(i: int) -> None:
        barrier.wait()
        results.append(d.setdefault("winner", i))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(set(results)) == 1
    assert d["winner"] == results[0]


# --- list ----------------------------------------------------------------------


def test_list_api_follows_list(manager):
    lp = manager.list(range(5))
    model = list(range(5))
    assert isinstance(lp, ListProxy)

    def same() -> None:
        assert lp.copy() == model
        assert len(lp) == len(model)

    ops = [
        lambda x: x.append(5),
        lambda x: x.extend(["a", "b"]),
        lambda x: x.insert(0, "first"),
        lambda x: x.insert(3, "mid"),
        lambda x: x.insert(-1, "neg"),
        lambda x: x.insert(100, "end"),
        lambda x: x.insert(-100, "start"),
        lambda x: x.__setitem__(2, "set"),
        lambda x: x.__setitem__(-1, "last"),
        lambda x: x.__delitem__(1),
        lambda x: x.__delitem__(-2),
        lambda x: x.__setitem__(slice(1, 3), ["s1", "s2", "s3"]),
        lambda x: x.__setitem__(slice(None, None, 3), ["e"] * len(x[::3])),
        lambda x: x.__delitem__(slice(-3, None)),
        lambda x: x.__delitem__(slice(None, None, 2)),
        lambda x: x.reverse(),
        lambda x: x.remove(x[1]),
        lambda x: x.extend([7, 8, 9]),
    ]
    for op in ops:
        op(model)
        op(lp)
        same()
    assert lp.pop() == model.pop() and lp.pop(0) == model.pop(0) and lp.pop(1) == model.pop(1)
    same()
    for sl in [
        slice(None),
        slice(1, 3),
        slice(-2, None),
        slice(None, -1),
        slice(5, 1),
        slice(None, None, -1),
        slice(1, None, 2),
        slice(-100, 100),
    ]:
        assert lp[sl] == model[sl]
    for i in range(-len(model), len(model)):
        assert lp[i] == model[i]
    lp.extend([3, 1, 2, 3])
    model.extend([3, 1, 2, 3])
    assert lp.index(3) == model.index(3) and lp.count(3) == model.count(3) == 2
    assert lp.index(3, lp.index(3) + 1) == model.index(3, model.index(3) + 1)
    assert 2 in lp and "nope" not in lp
    assert list(lp) == model and list(reversed(lp)) == model[::-1]
    assert lp + [9] == model + [9] and [9] + lp == [9] + model  # noqa: RUF005 - the operators under test
    assert lp * 2 == model * 2 and 2 * lp == 2 * model
    lp += ["plus"]
    lp *= 2
    model += ["plus"]
    model *= 2
    same()
    assert lp._callmethod("__len__") == len(model)
    lp.clear()
    assert lp.copy() == [] and len(lp) == 0
    lp.extend([3, 1, 2])
    lp *= 0
    assert len(lp) == 0


def test_list_sort_is_stable_with_key_and_reverse(manager):
    data = [("b", 2), ("a", 2), ("c", 1), ("d", 3), ("e", 1)]
    lp = manager.list(data)
    lp.sort(key=lambda t: t[1])
    assert lp.copy() == sorted(data, key=lambda t: t[1])
    lp.sort(key=lambda t: t[1], reverse=True)
    assert lp.copy() == sorted(data, key=lambda t: t[1], reverse=True)
    nums = manager.list([5, 3, 9, 1])
    nums.sort()
    assert nums.copy() == [1, 3, 5, 9]


def test_read_modify_write_list_ops_lose_no_concurrent_appends(manager):
    # sort/remove rewrite the list only if nobody changed it meanwhile (version check).
    lp = manager.list(range(20))

    def appender(tag: int) -> None:
        for i in range(40):
            lp.append((tag, i))

    threads = [threading.Thread(target=appender, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    removed = 0
    while True:
        done = not any(t.is_alive() for t in threads)
        lp.sort(key=repr)
        if removed < 20:
            lp.remove(removed)
            removed += 1
        if done:
            break
    expected = [(t, i) for t in range(3) for i in range(40)] + list(range(removed, 20))
    assert sorted(lp.copy(), key=repr) == sorted(expected, key=repr)


def test_list_errors_match_list(manager):
    lp = manager.list([1, 2, 3])
    with pytest.raises(IndexError, match="list index out of range"):
        lp[3]
    with pytest.raises(IndexError, match="list index out of range"):
        lp[-4]
    with pytest.raises(IndexError, match="list assignment index out of range"):
        lp[5] = 0
    with pytest.raises(IndexError, match="list assignment index out of range"):
        del lp[-9]
    with pytest.raises(IndexError, match="pop index out of range"):
        lp.pop(10)
    with pytest.raises(TypeError, match="list indices must be integers or slices, not str"):
        lp["x"]
    with pytest.raises(ValueError, match=r"list.remove\(x\): x not in list"):
        lp.remove(99)
    with pytest.raises(ValueError, match="is not in list"):
        lp.index(99)
    with pytest.raises(ValueError, match="extended slice of size 2"):
        lp[::2] = [1, 2, 3]
    with pytest.raises(TypeError):
        lp[0:1] = 5
    assert lp.copy() == [1, 2, 3]
    empty = manager.list()
    with pytest.raises(IndexError, match="pop from empty list"):
        empty.pop()


# --- Namespace and Value ------------------------------------------------------------


def test_namespace_attributes_live_in_redis(manager):
    ns = manager.Namespace(a=1, key="k")
    assert isinstance(ns, NamespaceProxy)
    ns.b = [1, 2]
    assert ns.a == 1 and ns.b == [1, 2]
    assert ns.key == "k"  # a stored attribute, not SharedObject.key()
    assert repr(ns) == "Namespace(a=1, b=[1, 2], key='k')" == str(ns)
    del ns.a
    with pytest.raises(AttributeError, match="'a'"):
        _ = ns.a
    with pytest.raises(AttributeError):
        del ns.a
    ns._local = "only here"  # underscore names stay on the proxy, as in the stdlib
    assert ns._local == "only here"
    assert "_local" not in repr(ns)
    value = ns._getvalue()
    assert isinstance(value, Namespace) and value.b == [1, 2]
    copy = pickle.loads(cloudpickle.dumps(ns))
    assert copy.b == [1, 2] and not hasattr(copy, "_local")


def test_value_proxy_holds_any_object(manager):
    v = manager.Value("i", 5)
    assert isinstance(v, ValueProxy)
    assert v.value == 5 and v.get() == 5
    v.value += 1
    assert v.get() == 6
    v.set("text")
    assert v.value == "text"
    assert str(v) == "Value('i', 'text')"
    s = manager.Value(str, "hello")
    assert s.value == "hello"
    assert ValueProxy[int] is not None


# --- values, nesting, pickling, security ------------------------------------------------


def test_nested_proxies_round_trip_and_share_state(manager):
    inner = manager.dict(x=1)
    outer = manager.list([inner])
    ns = manager.Namespace(inner=inner)
    got = outer[0]
    assert isinstance(got, DictProxy)
    got["y"] = 2
    assert inner.copy() == {"x": 1, "y": 2}
    assert ns.inner["y"] == 2
    d = manager.dict()
    d["list"] = outer
    d["list"][0]["z"] = 3
    assert inner["z"] == 3


def test_mutating_a_fetched_plain_value_does_not_write_back(manager):
    d = manager.dict(items=[1])
    d["items"].append(2)  # changes a copy, exactly as with the stdlib
    assert d["items"] == [1]
    items = d["items"]
    items.append(2)
    d["items"] = items
    assert d["items"] == [1, 2]


def test_proxies_pickle_to_the_same_state(manager):
    d = manager.dict(a=1)
    lp = manager.list([1])
    for proxy in (d, lp):
        clone = pickle.loads(cloudpickle.dumps(proxy))
        assert type(clone) is type(proxy) and clone is not proxy
    clone_d = pickle.loads(cloudpickle.dumps(d))
    clone_d["b"] = 2
    assert d["b"] == 2


def test_tampered_value_in_redis_is_refused(manager, ctx):
    d = manager.dict(a=1)
    hash_key = d._conn().keys[1]
    ctx.session.state.hset(hash_key, mapping={"sa": pickle.dumps("evil")})
    with pytest.raises(AuthenticationError):
        d["a"]


# --- manager lifecycle ------------------------------------------------------------------


def test_start_twice_and_use_before_start_raise_process_error(ctx):
    m = SyncManager(ctx=ctx)
    with pytest.raises(faasmp.ProcessError, match="not been started"):
        m.dict()
    m.start()
    try:
        with pytest.raises(faasmp.ProcessError, match="Already started server"):
            m.start()
    finally:
        m.shutdown()
    with pytest.raises(faasmp.ProcessError, match="Manager has shut down"):
        m.start()
    with pytest.raises(faasmp.ProcessError, match="Manager has shut down"):
        m.dict()
    m.shutdown()  # idempotent


def test_shutdown_deletes_every_object_and_proxies_fail_clearly(ctx):
    m = hm.TestManager(ctx=ctx)
    m.start()
    proxies = [m.dict(a=1), m.list([1, 2]), m.Namespace(a=1), m.Value("i", 1), m.Counter()]
    proxies[1].sort()  # creates the version key too
    proxies[4].increment()  # and the object's lock keys
    keys = [k for p in proxies for k in p._conn().keys[1:]]
    assert _exists(ctx, *keys) >= len(proxies)
    m.shutdown()
    assert _exists(ctx, *keys) == 0
    assert _exists(ctx, proxies[0]._conn().keys[0]) == 0  # the manager's own key
    for op in (
        lambda: proxies[0]["a"],
        lambda: proxies[1].append(3),
        lambda: proxies[2].a,
        lambda: proxies[3].value,
        lambda: proxies[4].increment(),
    ):
        with pytest.raises(ManagerShutdownError, match="manager has shut down"):
            op()


def test_number_of_objects_counts_live_objects_and_returns_to_zero(manager, ctx):
    """Issue 14: CPython's manager tests end with ``_number_of_objects()``/``_debug_info()``.

    Objects are counted like the stdlib server's refcounts: freed (their keys
    deleted) when the last proxy, copy or container holding them is gone.
    """
    import gc  # noqa: PLC0415

    m = manager
    assert m._number_of_objects() == 0
    assert m._debug_info() == ""
    d, lst, ns, v = m.dict(a=1), m.list([1]), m.Namespace(x=1), m.Value("i", 3)
    lock, q = m.Lock(), m.Queue()
    assert m._number_of_objects() == 6
    info = m._debug_info()
    assert info.count("refcount=1") == 6
    for typeid in ("dict", "list", "Namespace", "Value", "Lock", "Queue"):
        assert f"{typeid} object" in info
    assert f"  {d._oid}:       refcount=1\n    dict object" in info  # the stdlib's layout

    copy = pickle.loads(cloudpickle.dumps(d))  # a second reference to the same object
    assert f"{d._oid}:       refcount=2" in m._debug_info()
    del copy
    gc.collect()
    assert f"{d._oid}:       refcount=1" in m._debug_info()

    lst.append(m.dict(inner=1))  # kept alive by the list that stores it
    assert m._number_of_objects() == 7
    assert "1 stored in other shared objects" in m._debug_info()
    inner = lst[1]  # a copy read back holds its own reference...
    d_keys = d._conn().keys[1:]
    del d, ns, v, lock, q, lst
    gc.collect()
    assert m._number_of_objects() == 1  # ...and outlives its container
    assert inner["inner"] == 1
    assert _exists(ctx, *d_keys) == 0  # a freed object's keys are deleted at once
    del inner
    gc.collect()
    assert m._number_of_objects() == 0
    assert m._debug_info() == ""


def test_objects_that_only_hold_each_other_are_collected(manager):
    """CPython's test_list_proxy_in_list does ``b.append(b); del b``: a cycle of pins."""
    import gc  # noqa: PLC0415

    m = manager
    b = m.list()
    b.append(b)
    x, y = m.dict(), m.dict()
    x["y"], y["x"] = y, x
    keep = m.list([m.list([1])])  # a chain that is still referenced is kept
    del b, x, y
    gc.collect()
    assert m._number_of_objects() == 2
    assert keep[0][0] == 1
    del keep
    gc.collect()
    assert m._number_of_objects() == 0


def test_a_proxy_in_a_remote_process_counts_until_that_process_exits(manager, ctx):
    import gc  # noqa: PLC0415

    d = manager.dict()
    proc = ctx.Process(target=hm.sleep_then_set_keys, args=(d, 1.0, 3))
    proc.start()
    oid = d._oid
    del d  # the last local proxy goes while the copy is on its way or in use
    gc.collect()
    assert f"{oid}:       refcount=1" in manager._debug_info()
    proc.join(60)
    assert proc.exitcode == 0  # the object was still there for the process
    # Released with the process, which ends with os._exit (no garbage collection there).
    assert manager._number_of_objects() == 0


def test_every_key_written_carries_a_ttl(ctx):
    m = hm.TestManager(ctx=ctx)
    m.start()
    d = m.dict()
    d.setdefault("a", 1)
    lp = m.list()
    lp.append(1)
    ns = m.Namespace()
    ns.x = 1
    c = m.Counter()
    c.increment()
    pttl = ctx.session.state._r.pttl  # test-only peek at the redis-py client
    keys = [k for p in (d, lp, ns, m.Value("i", 1), c) for k in p._conn().keys]
    assert all(pttl(k) > 0 for k in keys if _exists(ctx, k)), [(k, pttl(k)) for k in keys]
    m.shutdown()


def test_keys_recreated_between_ttl_renewals_still_carry_a_ttl(ctx):
    """dict set and list append renew TTLs only every key_ttl/10 s, but a key they create gets one.

    Emptying a dict or a list deletes its Redis keys; the next write, made
    long before the next renewal, creates them again.
    """
    m = hm.TestManager(ctx=ctx)
    m.start()
    d, lp = m.dict(), m.list()
    d["a"] = 1  # the first write of each store renews every TTL
    lp.append(1)
    del d["a"]
    lp.pop()
    pttl = ctx.session.state._r.pttl  # test-only peek at the redis-py client
    keys = [k for p in (d, lp) for k in p._conn().keys]
    gone = [k for k in keys if not _exists(ctx, k)]
    assert len(gone) == 3, keys  # the dict's hash and order, the list's items
    d["b"] = 2  # between renewals
    lp.append(2)
    assert _exists(ctx, *gone) == len(gone)
    assert all(pttl(k) > 0 for k in gone), [(k, pttl(k)) for k in gone]
    m.shutdown()


def test_context_manager_and_initializer(ctx):
    seen: list[str] = []
    m = SyncManager(ctx=ctx)
    m.start(seen.append, ("init ran",))
    assert seen == ["init ran"]
    m.shutdown()
    with pytest.raises(TypeError, match="initializer must be a callable"):
        SyncManager(ctx=ctx).start(initializer=5)
    with SyncManager(ctx=ctx) as m2:
        d = m2.dict(a=1)
        assert d["a"] == 1
    with pytest.raises(ManagerShutdownError):
        d["a"]


def test_join_waits_in_redis_until_shutdown(ctx):
    m = ctx.Manager()
    t0 = time.monotonic()
    m.join(0.3)  # still running: returns after the timeout
    assert 0.25 < time.monotonic() - t0 < 5
    threading.Timer(0.3, m.shutdown).start()
    t0 = time.monotonic()
    m.join(30)
    assert time.monotonic() - t0 < 10
    m.join()  # shut down: returns at once


def test_address_connect_and_authkey(ctx):
    with SyncManager(authkey=b"secret", ctx=ctx) as owner:
        address = owner.address
        assert address.startswith("faasmp:") and address.endswith(owner._mid)
        d = owner.dict(shared=1)
        other = SyncManager(address=address, authkey=b"secret", ctx=ctx)
        other.connect()
        d2 = other.dict(from_other=True)
        d["child"] = d2
        with pytest.raises(AuthenticationError, match="digest received was wrong"):
            SyncManager(address=address, authkey=b"wrong", ctx=ctx).connect()
        with pytest.raises(OSError, match="already running"):
            SyncManager(address=address, authkey=b"secret", ctx=ctx).start()
        other.shutdown()  # a connected manager only detaches
        assert d["child"]["from_other"] is True
        child = d["child"]
    with pytest.raises(ManagerShutdownError):
        child.copy()  # objects made through the connection belong to the owner
    with pytest.raises(ConnectionRefusedError):
        SyncManager(address=address, ctx=ctx).connect()


def test_named_managers_and_bad_arguments(ctx):
    with SyncManager(address="results", ctx=ctx) as m:
        assert m.address.endswith("/results")
        twin = SyncManager(address="results", ctx=ctx)
        twin.connect()
        assert twin.address == m.address
    with pytest.raises(ValueError, match="no server socket"):
        SyncManager(address=("127.0.0.1", 50000), ctx=ctx)
    with pytest.raises(ValueError, match="serializer"):
        SyncManager(serializer="xmlrpclib", ctx=ctx)
    with pytest.raises(TypeError, match="authkey"):
        SyncManager(authkey="text", ctx=ctx)
    with pytest.raises(ValueError, match="belongs to faasmp run"):
        SyncManager(address="faasmp:otherrun/abc", ctx=ctx).connect()
    with pytest.raises(ValueError, match="needs the address"):
        SyncManager(ctx=ctx).connect()


def test_proxies_fail_clearly_once_their_run_has_ended():
    from faasmp.context import FaasContext
    from tests.conftest import TEST_SETTINGS

    ctx = FaasContext(**TEST_SETTINGS)
    try:
        d = ctx.Manager().dict(a=1)
        assert d["a"] == 1
    finally:
        ctx.shutdown()
    with pytest.raises(ManagerShutdownError, match="run it belonged to has ended"):
        d["a"]
    assert not ctx.running  # and no new run was started by the attempt


def test_manager_kept_alive_by_its_proxies(ctx):
    d = ctx.Manager().dict(a=1)  # the manager object itself is dropped here
    import gc

    gc.collect()
    d["b"] = 2
    assert d.copy() == {"a": 1, "b": 2}
    m = d._manager
    m.shutdown()


# --- custom types ---------------------------------------------------------------------------


def test_registered_class_gets_an_autoproxy(ctx):
    with hm.TestManager(ctx=ctx) as m:
        c = m.Counter(5)
        assert isinstance(c, AutoProxy)
        assert type(c).__name__ == "AutoProxy[Counter]"
        assert c.increment() == 6 and c.increment(4) == 10 and c.get() == 10
        assert not hasattr(c, "_private") and not hasattr(c, "n")
        with pytest.raises(ValueError, match="changed, then failed"):
            c.fail_after_change()
        assert c.get() == 110  # like a server-side object, the change before the error stays
        assert c._getvalue().n == 110
        clone = pickle.loads(cloudpickle.dumps(c))
        assert clone.increment() == 111 and c.get() == 111

        ro = m.ReadOnlyCounter(1)
        assert ro.get() == 1 and not hasattr(ro, "increment")
        with pytest.raises(AttributeError, match="not in exposed"):
            ro._callmethod("increment")

        hc = m.HistoryCounter(2)
        hist = hc.history()
        assert isinstance(hist, ListProxy) and hist.copy() == ["n=2"]
        snap = hc.snapshot()
        assert isinstance(snap, DictProxy) and snap.copy() == {"n": 2}

        pc = m.ProxiedCounter()
        assert type(pc) is hm.CounterProxy
        assert pc.increment(3) == 3 and pc.get() == 3


def test_objects_that_pickle_specially_are_stored_whole(ctx):
    with hm.TestManager(ctx=ctx) as m:
        plain, slotted, stateful = m.Counter(), m.SlottedCounter(), m.StatefulCounter()
        assert plain._plain and not slotted._plain and not stateful._plain
        assert [slotted.increment() for _ in range(3)] == [1, 2, 3]
        assert stateful.increment() == (1, "rebuilt")  # __setstate__ ran on load
        assert stateful.increment() == (2, "rebuilt")
        clone = pickle.loads(cloudpickle.dumps(plain))  # fetches the class with its first call
        assert "_cls" not in clone.__dict__
        assert clone.increment() == 1 and plain.increment() == 2


def test_register_validates_like_the_stdlib():
    class M(BaseManager):
        pass

    with pytest.raises(TypeError, match="proxytype"):
        M.register("X", dict, proxytype=dict)
    with pytest.raises(TypeError, match="method_to_typeid"):
        M.register("Y", dict, method_to_typeid={"get": 1})
    M.register("Z", hm.Counter, create_method=False)
    assert not hasattr(M, "Z") and "Z" in M._registry
    assert "Z" not in BaseManager._registry and "Counter" not in SyncManager._registry


def test_crashed_lock_holder_frees_the_object_after_its_lease(ctx):
    # Fault injection: take the object's lock and never release it.
    with hm.TestManager(ctx=ctx) as m:
        c = m.ShortLeaseCounter()
        c._acquire("crashed-holder")
        t0 = time.monotonic()
        assert c.increment() == 1  # waits (in BLPOP) for the 0.5 s lease, then proceeds
        assert 0.3 < time.monotonic() - t0 < 10
        with pytest.raises(RuntimeError, match=r"longer than its 0\.5 s lease"):
            c._release_lock("crashed-holder", None)


# --- remote processes ----------------------------------------------------------------------------


def _run_all(ctx, target, argsets):
    procs = [ctx.Process(target=target, args=a) for a in argsets]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_remote_processes_write_one_dict_consistently(manager, ctx):
    d = manager.dict()
    _run_all(ctx, hm.set_keys, [(d, 250 * i, 250) for i in range(4)])
    assert len(d) == 1000
    assert d.copy() == {f"k{i}": i for i in range(1000)}


def test_remote_processes_append_to_one_list_consistently(manager, ctx):
    lp = manager.list()
    _run_all(ctx, hm.append_items, [(lp, tag, 100) for tag in range(4)])
    items = lp.copy()
    assert len(items) == 400
    assert sorted(items) == sorted((t, i) for t in range(4) for i in range(100))
    for tag in range(4):  # each process's items keep their order
        assert [i for t, i in items if t == tag] == list(range(100))


def test_remote_processes_serialize_custom_object_calls(ctx):
    with hm.TestManager(ctx=ctx) as m:
        c = m.Counter()
        _run_all(ctx, hm.increment_many, [(c, 100)] * 4)
        assert c.get() == 400


def test_remote_use_of_nested_proxies_namespace_and_method_results(manager, ctx):
    inner = manager.dict(local=True)
    outer = manager.list([inner])
    ns = manager.Namespace(total=1)
    _run_all(ctx, hm.mutate_nested, [(outer,)])
    _run_all(ctx, hm.fill_namespace, [(ns,)])
    assert inner.copy() == {"local": True, "from_remote": True}
    assert outer[1] == "remote-was-here"
    assert ns.remote == "yes" and ns.total == 2
    with hm.TestManager(ctx=ctx) as m:
        hc = m.HistoryCounter(7)
        out = m.list()
        _run_all(ctx, hm.history_remote, [(hc, out)])
        remote_hist = out[0]
        assert isinstance(remote_hist, ListProxy)
        assert remote_hist.copy() == ["n=7", "appended remotely"]


def test_pool_workers_share_a_manager_dict(manager, ctx):
    d = manager.dict()
    with ctx.Pool(2) as pool:
        assert sorted(pool.map(hm.store_square, [(d, x) for x in range(10)])) == list(range(10))
    assert d.copy() == {x: x * x for x in range(10)}


def test_a_started_manager_can_be_passed_to_a_process(ctx):
    with SyncManager(ctx=ctx) as m:
        shared = m.list()
        _run_all(ctx, hm.create_with_manager, [(m, shared)])
        made = shared[0]
        assert made.copy() == {"made": "remotely"}
        keys = made._conn().keys[1:]
        made["x"] = 1
        assert _exists(ctx, *keys)
    assert _exists(ctx, *keys) == 0  # objects made remotely are deleted with the manager


# --- objects the manager hands out directly (the context's own) ------------------------------------


def test_sync_objects_queues_and_array_are_the_contexts_own(manager, ctx):
    from faasmp import queues, synchronize

    lock = manager.Lock()
    assert isinstance(lock, synchronize.Lock)
    assert lock.acquire(timeout=5)
    assert not lock.acquire(timeout=0.05)
    lock.release()
    rlock = manager.RLock()
    with rlock, rlock:
        pass
    sem = manager.Semaphore(2)
    assert sem.acquire(timeout=1) and sem.acquire(timeout=1) and not sem.acquire(timeout=0.05)
    bsem = manager.BoundedSemaphore(1)
    bsem.acquire()
    bsem.release()
    with pytest.raises(ValueError):
        bsem.release()
    cond = manager.Condition()
    with cond:
        assert cond.wait(0.05) is False
    event = manager.Event()
    event.set()
    assert event.wait(5)
    barrier = manager.Barrier(1)
    assert barrier.wait(5) == 0
    q = manager.Queue(2)
    assert isinstance(q, queues.Queue)
    q.put("item")
    assert q.get(timeout=5) == "item"
    jq = manager.JoinableQueue()
    jq.put(1)
    jq.get(timeout=5)
    jq.task_done()
    jq.join()
    arr = manager.Array("i", [1, 2, 3])
    arr[0] = 5
    assert arr[:] == [5, 2, 3] and len(arr) == 3
    with arr.get_lock():
        arr[1] += 1
    assert arr[1] == 3


def test_iterating_a_list_proxy_is_live_like_the_stdlib_iterator_proxy(manager):
    a = manager.list(range(10))
    it = iter(a)
    assert list(it) == list(range(10))
    assert list(it) == []  # exhausted, and stays so
    a.append(10)
    assert list(it) == []
    it = iter(a)
    a[0] = 100  # not read yet: the iterator sees it
    assert next(it) == 100
    big = manager.list(range(1000))
    assert list(big) == list(range(1000))  # read in chunks


def test_iterating_a_dict_proxy_detects_a_size_change(manager):
    d = manager.dict()
    for i in range(65, 70):
        d[i] = chr(i)
    it = iter(d)
    assert list(it) == [65, 66, 67, 68, 69]
    assert list(it) == []
    it = iter(d)
    d.clear()
    with pytest.raises(RuntimeError, match="changed size during iteration"):
        next(it)
    d.update({i: i for i in range(600)})
    it = iter(d)
    for _ in range(300):
        next(it)
    d[1000] = 1
    with pytest.raises(RuntimeError, match="changed size"):  # checked every 256 keys
        list(it)


def test_stdlib_proxy_class_registered_on_a_faasmp_manager(ctx):
    import multiprocessing.managers

    with hm.TestManager(ctx=ctx) as m:
        squares = m.Squares(5)
        assert isinstance(squares, faasmp.managers.BaseProxy)
        assert type(squares).__name__ == "StdlibIteratorProxy"
        assert next(squares) == 0
        assert list(squares) == [1, 4, 9, 16]
        again = m.Squares(4)
        assert next(again) == 0
        clone = pickle.loads(cloudpickle.dumps(again))  # rebuilt as the same adapted type
        assert type(clone) is type(again)
        assert next(clone) == 1
        p = ctx.Process(target=hm.sum_iterator, args=(again,))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        assert list(again) == []
        with pytest.raises(multiprocessing.managers.RemoteError):
            again._callmethod("close")  # not exposed


def test_unpicklable_referents_are_served_by_the_managers_process(ctx, tmp_path):
    m = hm.TestManager(ctx=ctx)
    m.start()
    assert m._process.exitcode is None and m._process.is_alive()
    gen = m.SquaresGen(10)  # a generator cannot live in Redis: this process keeps it
    assert next(gen) == 0
    out = ctx.Value("q", 0)
    p = ctx.Process(target=hm.sum_into, args=(gen, out))  # the worker calls back into this process
    p.start()
    p.join(60)
    assert p.exitcode == 0 and out.value == sum(i * i for i in range(1, 10))
    assert list(gen) == []
    path = tmp_path / "log.txt"
    log = m.FileLog(str(path))
    log.write("here;")
    p = ctx.Process(target=hm.write_log, args=(log, "there;"))
    p.start()
    p.join(60)
    assert p.exitcode == 0 and path.read_text() == "here;there;"
    m.shutdown()
    assert m._process.exitcode == 0 and not m._process.is_alive()
    with pytest.raises(ManagerShutdownError):
        next(gen)
    assert m.address.rsplit("/", 1)[-1] not in faasmp.managers._LOCAL_SERVERS  # the thread stopped
    with pytest.raises(ManagerShutdownError):
        pickle.loads(cloudpickle.dumps(log)).write("late")


def test_errors_a_stdlib_server_reports_as_remote_error(ctx):
    import multiprocessing.managers

    with hm.TestManager(ctx=ctx) as m:
        with pytest.raises(multiprocessing.managers.RemoteError, match="bad x 3") as info:
            m.Failing(3)
        assert isinstance(info.value, ValueError)  # and still the original type
        with pytest.raises(multiprocessing.managers.RemoteError):
            m.Pool(0)
        ro = m.ReadOnlyCounter(1)
        with pytest.raises(multiprocessing.managers.RemoteError, match="not in exposed"):
            ro._callmethod("increment")


def test_manager_event_is_an_event_proxy(manager):
    from faasmp import synchronize

    event = manager.Event()
    assert isinstance(event, synchronize.Event)
    assert re.match(r"<EventProxy object, typeid 'Event' at 0x[0-9a-f]+>$", repr(event))
    event.set()
    assert event.is_set() and pickle.loads(cloudpickle.dumps(event)).is_set()


def test_shutdown_releases_direct_objects_but_not_ones_passed_in(ctx):
    own_lock = ctx.Lock()
    m = ctx.Manager()
    lock = m.Lock()
    cond = m.Condition(own_lock)
    q = m.Queue()
    arr = m.Array("d", 4)
    q.put(1)
    data = sharedctypes.segment_of(arr).handle  # the Array's bytes, version and log
    keys = [o.key(s) for o in (lock, q, data) for s in o._key_suffixes]
    assert _exists(ctx, *keys) > 0
    m.shutdown()
    assert _exists(ctx, *keys) == 0
    with pytest.raises(RuntimeError, match="gone"):
        lock.acquire(timeout=1)
    assert cond._lock is own_lock
    assert own_lock.acquire(timeout=5)  # the caller's lock is not the manager's to delete
    own_lock.release()


def test_manager_pool_is_the_contexts_pool_and_ends_with_the_manager(ctx):
    from tests import helpers

    m = ctx.Manager()
    pool = m.Pool(2)
    assert pool.map(helpers.square, range(5)) == [0, 1, 4, 9, 16]
    m.shutdown()
    with pytest.raises(ValueError):
        pool.map(helpers.square, range(2))  # terminated with its manager


def test_remote_processes_use_manager_lock_and_queue(manager, ctx):
    lock = manager.Lock()
    ns = manager.Namespace(total=0)
    _run_all(ctx, hm.lock_increment, [(lock, ns, 25)] * 3)
    assert ns.total == 75
    q = manager.Queue()
    out = manager.Queue()
    q.put(21)
    _run_all(ctx, hm.queue_roundtrip, [(q, out)])
    assert out.get(timeout=10) == 42


def test_the_manager_package_sends_no_redis_command_itself():
    """Issue 16: every Redis command and Lua script of the managers lives in faasmp/backends/redis/.

    The package calls the named methods of those classes (dict_get,
    list_append, ...) only, so each structure's round-trip budget has one home.
    """
    import pathlib

    package = pathlib.Path(faasmp.managers.__file__).parent
    raw = re.compile(r"redis\.call|\.script\(|\.execute\(|\.pipeline\(|\.blpop\(|\.state\.|\bEVALSHA\b")
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(package.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if raw.search(line)
    ]
    assert found == [], "Redis commands outside faasmp/backends/redis:\n" + "\n".join(found)


def test_signalling_the_managers_server_never_signals_the_client(ctx):
    # CPython's suite does os.kill(smm._process.pid, SIGINT) on the stdlib's
    # server process; faasmp's managers have none, and a pid of the client
    # there sent the SIGINT to the client itself (KeyboardInterrupt).
    import os
    import signal

    from faasmp.managers import SharedMemoryManager

    for m in (ctx.Manager(), SharedMemoryManager(ctx=ctx)):
        if m._process is None:
            m.start()
        assert m._process.pid is None
        with pytest.raises(TypeError):
            os.kill(m._process.pid, signal.SIGINT)
        m.shutdown()
