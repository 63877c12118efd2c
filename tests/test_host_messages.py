"""Large Pipe and Queue messages through host files in host mode (faasmp.runtime.bulk).

In host mode a body of at least ``bulk.HOST_MIN`` bytes is written to a file
of the run's private directory and Redis carries a 59-byte signed
descriptor in its place; with the DSM forced (as on cloud backends) the body
goes through Redis.  The tests below tell the two apart by what Redis
receives (``INFO`` byte counters, the list's elements), so each fails if
the mechanism is missing.
"""

from __future__ import annotations

import hashlib
import os
import queue
import random

import pytest
import redis

from faasmp.backends import host_memory as hostmem
from faasmp.context import FaasContext
from faasmp.runtime import bulk
from faasmp.runtime.call import AuthenticationError
from tests import helpers_ipc
from tests.conftest import TEST_SETTINGS, _mode_context

MIB = 1 << 20


def _host(ctx: FaasContext) -> hostmem.HostIdentity | None:
    return ctx.session.host_memory


def _net_in(ctx: FaasContext) -> int:
    """Bytes the server has read from all clients (a separate connection's INFO)."""
    info = redis.Redis.from_url(ctx.session.url).info("stats")
    return int(info["total_net_input_bytes"])


def _message_files(ctx: FaasContext) -> set[str]:
    host = _host(ctx)
    assert host is not None
    return {n for n in os.listdir(host.path) if n.startswith(hostmem.MESSAGE_PREFIX)}


def _first_element(ctx: FaasContext, key: str) -> bytes:
    ctx.session.state.direct.flush()  # a deferred send's reply: the server has run it
    element = ctx.session.state._r.lindex(key, 0)  # test-only peek at the redis-py client
    assert element is not None
    return bytes(element)


@pytest.fixture(scope="session", params=["embedded", "external"])
def host_ctx(request: pytest.FixtureRequest) -> FaasContext:
    """The combinations of ``shm_ctx`` in host mode (the localhost default), shared with it."""
    ctx = _mode_context(request)
    assert _host(ctx) is not None, "host shared memory is the localhost default"
    return ctx


@pytest.mark.timeout(120)
def test_a_large_message_crosses_redis_only_without_host_memory(shm_ctx):
    ctx = shm_ctx
    a, b = ctx.Pipe()
    proc = ctx.Process(target=helpers_ipc.echo_bytes, args=(b,))
    proc.start()
    a.send_bytes(b"warm")
    assert a.recv_bytes() == b"warm"
    data = os.urandom(MIB)
    before = _net_in(ctx)
    a.send_bytes(data)  # parent -> child, then child -> parent
    assert a.recv_bytes() == data
    grew = _net_in(ctx) - before
    a.send_bytes(b"stop")
    proc.join(30)
    assert proc.exitcode == 0
    if _host(ctx) is not None:
        assert grew < MIB // 8, f"Redis read {grew:,} bytes for two 1 MiB messages in host mode"
    else:
        assert grew >= 2 * MIB, f"Redis read only {grew:,} bytes for two 1 MiB messages"


@pytest.mark.timeout(120)
def test_large_queue_items_cross_redis_only_without_host_memory(shm_ctx):
    ctx = shm_ctx
    q = ctx.Queue()
    big = random.Random(7).randbytes(MIB)
    before = _net_in(ctx)
    proc = ctx.Process(target=helpers_ipc.put_generated, args=(q, MIB, 7))
    proc.start()
    assert q.get(timeout=60) == big
    assert q.get(timeout=60) == {"k": big}
    proc.join(30)
    assert proc.exitcode == 0
    grew = _net_in(ctx) - before
    if _host(ctx) is not None:
        # The Process' start and join cross Redis too; the items do not.
        assert grew < MIB // 2, f"Redis read {grew:,} bytes for two 1 MiB items in host mode"
    else:
        assert grew >= 2 * MIB, f"Redis read only {grew:,} bytes for two 1 MiB items"


@pytest.mark.parametrize("size", [bulk.HOST_MIN - 1, bulk.HOST_MIN])
def test_bodies_from_host_min_up_are_sent_as_descriptors(shm_ctx, size):
    ctx = shm_ctx
    a, b = ctx.Pipe()
    data = os.urandom(size)
    a.send_bytes(data)
    element = _first_element(ctx, b._rkey)
    if _host(ctx) is not None and size >= bulk.HOST_MIN:
        assert len(element) == bulk.DESCRIPTOR_SIZE
    else:
        assert len(element) == 32 + size
    assert b.recv_bytes() == data


def test_a_forged_descriptor_is_refused(host_ctx):
    ctx = host_ctx
    a, b = ctx.Pipe()
    a.send_bytes(os.urandom(MIB))
    real = _first_element(ctx, b._rkey)
    b.recv_bytes()
    # The same descriptor body under a tag made without the authkey.
    forged = hashlib.sha256(b"not the authkey" + real[32:]).digest() + real[32:]
    ctx.session.state.rpush(b._rkey, forged)
    with pytest.raises(AuthenticationError):
        b.recv_bytes()


def test_a_user_message_shaped_like_a_descriptor_is_delivered_as_data(host_ctx):
    ctx = host_ctx
    a, b = ctx.Pipe()
    data = os.urandom(MIB)
    a.send_bytes(data)
    descriptor = _first_element(ctx, b._rkey)
    # A user's message whose body is exactly a real descriptor's body, naming
    # a message file that exists: its tag is an ordinary message's tag, so it
    # is data; the message it names is still delivered once, intact.
    a.send_bytes(descriptor[32:])
    assert len(descriptor) == bulk.DESCRIPTOR_SIZE
    assert b.recv_bytes() == data
    assert b.recv_bytes() == descriptor[32:]


def test_a_message_whose_file_is_gone_raises_a_clear_error(host_ctx):
    ctx = host_ctx
    a, b = ctx.Pipe()
    before = _message_files(ctx)
    a.send_bytes(os.urandom(MIB))
    _first_element(ctx, b._rkey)  # sent
    (name,) = _message_files(ctx) - before
    os.unlink(os.path.join(_host(ctx).path, name))  # as if the run's directory had been removed
    with pytest.raises(
        hostmem.HostMemoryError, match=rf"pipe {b._oid}: a message of 1,048,576 bytes .* cannot be read"
    ):
        b.recv_bytes()
    a.send(("next", 1))
    assert b.recv() == ("next", 1)  # the pipe stays usable


def test_a_full_bounded_queue_leaves_no_message_file(host_ctx):
    ctx = host_ctx
    q = ctx.Queue(1)
    before = _message_files(ctx)
    big = os.urandom(MIB)
    q.put(big)
    with pytest.raises(queue.Full):
        q.put(big, timeout=0.05)
    with pytest.raises(queue.Full):
        q.put_nowait(big)
    assert len(_message_files(ctx) - before) == 1  # the item in the queue
    assert q.get(timeout=5) == big
    assert _message_files(ctx) - before == set()  # read once, then removed


def test_a_message_dropped_at_a_closed_reader_takes_its_file_with_it(host_ctx):
    ctx = host_ctx
    a, b = ctx.Pipe()
    before = _message_files(ctx)
    b.close()
    a.send_bytes(os.urandom(MIB))  # deferred: the closed reader shows on a later send
    with pytest.raises(BrokenPipeError):
        a.send_bytes(b"small")
    assert _message_files(ctx) - before == set()


@pytest.mark.timeout(120)
def test_files_of_unread_messages_go_with_the_run():
    ctx = FaasContext(**TEST_SETTINGS)
    try:
        host = _host(ctx)
        if host is None:
            pytest.skip("host shared memory is not the default here")
        a, _b = ctx.Pipe()
        q = ctx.Queue()
        a.send_bytes(os.urandom(MIB))
        q.put(os.urandom(MIB))
        ctx.session.state.direct.flush()
        assert len(_message_files(ctx)) == 2
    finally:
        ctx.shutdown()
    assert not os.path.exists(host.path)
