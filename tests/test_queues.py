"""Queue, SimpleQueue and JoinableQueue semantics, locally and across remote processes."""

from __future__ import annotations

import gc
import pickle
import queue
import threading
import time

import pytest

from faasmp.context import FaasContext
from faasmp.queues import SEM_VALUE_MAX, JoinableQueue, Queue, SimpleQueue
from faasmp.runtime.call import AuthenticationError, PicklingFailed
from tests import helpers_ipc
from tests.conftest import TEST_SETTINGS

# --- Queue, locally ----------------------------------------------------------------


def test_fifo_and_sizes(ctx):
    q = ctx.Queue()
    assert q.empty() and q.qsize() == 0 and not q.full()
    for item in [1, "two", (3,), None]:
        q.put(item)
    assert q.qsize() == 4 and not q.empty()
    assert [q.get() for _ in range(4)] == [1, "two", (3,), None]
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(queue.Empty):
        q.get(timeout=-1)  # negative timeouts do not block (like the stdlib)


def test_get_timeout_raises_empty(ctx):
    q = ctx.Queue()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert time.monotonic() - t0 >= 0.15
    helpers_ipc.later(0.2, q.put, "late")
    assert q.get(timeout=10) == "late"


def test_maxsize_blocks_put_until_timeout(ctx):
    q = ctx.Queue(2)
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=-1)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.3)
    assert time.monotonic() - t0 >= 0.25
    assert q.qsize() == 2
    assert [q.get(), q.get()] == [1, 2]


def test_blocked_put_wakes_when_a_get_makes_room(ctx):
    q = ctx.Queue(1)
    q.put("first")
    done = threading.Event()

    def putter() -> None:
        q.put("second", timeout=30)
        done.set()

    t = threading.Thread(target=putter)
    t.start()
    assert not done.wait(0.3)  # blocked: the queue is full
    assert q.get_nowait() == "first"  # a non-blocking get frees the space
    assert done.wait(10)
    t.join()
    assert q.get(block=False) == "second"
    # Several blocked putters, room made by blocking gets.
    q.put(0)
    putters = [threading.Thread(target=q.put, args=(i, True, 30)) for i in (1, 2, 3)]
    for t in putters:
        t.start()
    got = [q.get(timeout=10) for _ in range(4)]
    for t in putters:
        t.join(10)
    assert got[0] == 0 and sorted(got) == [0, 1, 2, 3]
    assert q.empty()


def test_unbounded_for_zero_or_negative_maxsize(ctx):
    for maxsize in (0, -5):
        q = ctx.Queue(maxsize)
        assert q._maxsize == SEM_VALUE_MAX  # as in the stdlib
        for i in range(50):
            q.put_nowait(i)
        assert not q.full() and q.qsize() == 50
    with pytest.raises(TypeError, match="maxsize must be an integer, not str"):
        ctx.Queue("3")


def test_close_and_join_thread(ctx):
    q = ctx.Queue()
    with pytest.raises(AssertionError, match="not closed"):
        q.join_thread()
    q.put("kept")
    copy = pickle.loads(pickle.dumps(q))
    q.cancel_join_thread()
    q.close()
    q.join_thread()  # no feeder thread: returns at once
    with pytest.raises(ValueError, match="is closed"):
        q.put(1)
    with pytest.raises(ValueError, match="is closed"):
        q.get()
    assert copy.get(timeout=5) == "kept"  # other handles are unaffected


def test_large_items_on_every_kind_of_queue(shm_ctx):
    # Through host files in host mode, through Redis with the DSM forced.
    ctx = shm_ctx
    big = bytes(range(256)) * 2048  # 512 KiB: above the Lua threshold
    big_array = bytearray(big[::-1])
    for q in (ctx.Queue(), ctx.Queue(3), ctx.JoinableQueue(), ctx.SimpleQueue()):
        q.put(big)
        q.put({"k": big})
        q.put(big_array)  # a top-level bytes/bytearray travels as parts, never copied
        assert q.get() == big
        assert q.get() == {"k": big}
        got = q.get()
        assert type(got) is bytearray and got == big_array
        assert q.empty()
    jq = ctx.JoinableQueue()
    jq.put(big)
    assert jq.join(timeout=0.1) is False
    jq.get()
    jq.task_done()
    assert jq.join(timeout=5) is True


def test_unpicklable_item_raises_in_put(ctx):
    q = ctx.Queue()
    with pytest.raises(PicklingFailed, match=r"put on <faasmp\.queues\.Queue"):
        q.put(threading.Lock())
    assert q.empty()


def test_tampered_item_is_refused(ctx):
    q = ctx.Queue()
    ctx.session.state.rpush(q._items, b"\0" * 32 + pickle.dumps("forged"))
    with pytest.raises(AuthenticationError):
        q.get(timeout=5)


def test_tampered_large_item_is_refused(dsm_ctx):
    """A large item (MAC'd with Poly1305, written as parts) is refused if one byte changed.

    With the DSM forced, as on cloud backends: in host mode the body is in a host file.
    """
    q = dsm_ctx.Queue()
    ctx = dsm_ctx
    q.put(b"x" * (1 << 20))
    state = ctx.session.state
    stored = bytearray(state.lpop_many(q._items, 1)[0])
    assert stored[-1001:-1] == b"x" * 1000  # the pickle ends with its STOP opcode
    stored[-500] ^= 1
    state.rpush(q._items, bytes(stored))
    with pytest.raises(AuthenticationError):
        q.get(timeout=5)


def test_keys_deleted_with_the_queue(ctx):
    q = ctx.JoinableQueue(2)
    q.put(1)
    q.put(2)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    q.get()
    q.task_done()
    state = ctx.session.state
    pattern = q.key("*")
    keys = list(state.scan_keys(pattern))
    assert keys and all(state._r.pttl(k) > 0 for k in keys)  # every key carries a TTL
    del q
    gc.collect()
    assert list(state.scan_keys(pattern)) == []


def test_generic_alias():
    assert Queue[int].__origin__ is Queue
    assert SimpleQueue[str].__origin__ is SimpleQueue


# --- JoinableQueue, locally --------------------------------------------------------


def test_task_done_and_join(ctx):
    q = ctx.JoinableQueue()
    assert isinstance(q, JoinableQueue) and isinstance(q, Queue)
    with pytest.raises(ValueError, match=r"task_done\(\) called too many times"):
        q.task_done()
    assert q.join(timeout=1) is True  # nothing put: returns at once
    q.put("a")
    q.put("b")
    assert q.join(timeout=0.2) is False
    q.get()
    q.task_done()
    assert q.join(timeout=0.2) is False
    q.get()
    helpers_ipc.later(0.2, q.task_done)
    assert q.join(timeout=10) is True
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()


def test_many_joiners_wake_together(ctx):
    q = ctx.JoinableQueue()
    q.put(1)
    results: list[bool] = []
    joiners = [threading.Thread(target=lambda: results.append(q.join(timeout=30))) for _ in range(3)]
    for t in joiners:
        t.start()
    time.sleep(0.2)
    q.get()
    q.task_done()
    for t in joiners:
        t.join(30)
    assert results == [True, True, True]


# --- SimpleQueue, locally ----------------------------------------------------------


def test_simple_queue(ctx):
    q = ctx.SimpleQueue()
    assert q.empty()
    q.put("x")
    q.put([1, 2])
    assert not q.empty()
    assert q.get() == "x" and q.get() == [1, 2]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    with pytest.raises(queue.Empty):
        q.get(timeout=0)
    q.close()
    for call in (q.empty, q.get, lambda: q.put(1)):
        with pytest.raises(OSError, match="handle is closed"):
            call()


# --- across remote processes -------------------------------------------------------


def test_three_remote_producers_nothing_lost_or_duplicated(ctx):
    q = ctx.Queue()
    producers = [ctx.Process(target=helpers_ipc.produce, args=(q, p, 200)) for p in range(3)]
    for p in producers:
        p.start()
    got = [q.get(timeout=60) for _ in range(600)]
    for p in producers:
        p.join(30)
        assert p.exitcode == 0
    assert sorted(got) == [(p, i) for p in range(3) for i in range(200)]
    for p in range(3):  # each producer's items arrive in its order
        assert [i for pp, i in got if pp == p] == list(range(200))
    assert q.empty()


def test_remote_put_blocks_on_a_bounded_queue(ctx):
    q = ctx.Queue(maxsize=2)
    items = list(range(10))
    p = ctx.Process(target=helpers_ipc.put_all, args=(q, items))
    p.start()
    got = []
    for _ in items:
        got.append(q.get(timeout=30))
        assert q.qsize() <= 2
    p.join(30)
    assert p.exitcode == 0
    assert got == items


def test_joinable_queue_with_remote_consumers(ctx):
    tasks, results = ctx.JoinableQueue(), ctx.Queue()
    consumers = [ctx.Process(target=helpers_ipc.consume_joinable, args=(tasks, results)) for _ in range(2)]
    for c in consumers:
        c.start()
    for i in range(20):
        tasks.put(i)
    for _ in consumers:
        tasks.put(None)
    assert tasks.join(timeout=60) is True
    assert sorted(results.get(timeout=5) for _ in range(20)) == [2 * i for i in range(20)]
    for c in consumers:
        c.join(30)
        assert c.exitcode == 0


def test_simple_queue_from_a_remote_process(ctx):
    q = ctx.SimpleQueue()
    p = ctx.Process(target=helpers_ipc.simple_put, args=(q, ["a", "b", "c"]))
    p.start()
    assert [q.get(timeout=30) for _ in range(3)] == ["a", "b", "c"]
    p.join(30)


def test_queue_used_by_pool_workers(ctx):
    q = ctx.Queue()
    with ctx.Pool(2) as pool:
        pool.starmap(helpers_ipc.produce, [(q, 0, 5), (q, 1, 5)])
    assert sorted(q.get(timeout=10) for _ in range(10)) == [(p, i) for p in range(2) for i in range(5)]


def test_get_blocks_longer_than_the_client_socket_timeout(external_server):
    """Blocking waits outlast the client's read timeout (which detects a frozen server).

    Every read is bounded (``socket_timeout``, 10 s by default; 1 s here via
    the URL), so a wait longer than that is split into shorter blocking pops
    whose replies are each given their wait plus the read timeout.  redis-py 8's
    own default (a 5 s socket timeout) once cut every longer wait with a
    TimeoutError.  One server is enough: the code path does not depend on it.
    """
    ctx = FaasContext(redis_url=f"{external_server.url}?socket_timeout=1", **TEST_SETTINGS)
    try:
        q = ctx.Queue()
        helpers_ipc.later(2.5, q.put, "after 2.5 s")
        assert q.get() == "after 2.5 s"  # forever: split into 1 s waits
        t0 = time.monotonic()
        with pytest.raises(queue.Empty):
            q.get(timeout=2.2)  # a finite wait longer than the read timeout
        assert time.monotonic() - t0 >= 2.2
        helpers_ipc.later(1.5, q.put, "after 1.5 s")
        assert q.get(timeout=30) == "after 1.5 s"
        big = bytes(range(256)) * 4096  # 1 MiB: read from the socket into one buffer, not by the parser
        helpers_ipc.later(1.5, q.put, big)
        assert q.get() == big
    finally:
        ctx.shutdown()


def test_queue_keys_recreated_between_ttl_renewals_still_carry_a_ttl(ctx):
    """Puts renew TTLs every key_ttl/10 s, but the put whose push creates a key sets its TTL."""
    q = ctx.JoinableQueue()
    q.put("first")  # renews every TTL
    assert q.get(timeout=30) == "first"  # the items list is gone with its last item
    q.task_done()
    state = ctx.session.state
    assert state.exists(q._items) == 0
    q.put("second")  # long before the next renewal
    state.direct.flush()
    pttl = state._r.pttl  # test-only peek at the redis-py client
    assert pttl(q._items) > 0
    assert pttl(q.key("unfinished")) > 0
    assert q.get(timeout=30) == "second"
    q.task_done()
    q.join()
