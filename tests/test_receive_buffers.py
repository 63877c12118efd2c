"""Large Pipe and Queue messages are received into a buffer the thread keeps.

A fresh 1 MiB buffer per received message cost its reader ~0.5 ms of page
faults: the allocator maps new pages for it (and unmaps them when it is
freed), so each message touched ~256-512 fresh pages.  The receiver now reads
a large element (through Redis, or from its host file when the consumer
unpickles it) into the thread's own receive buffer and gives it back once the
bytes are copied out (``DirectOps.take_buffer``/``recycle``).  The tests count
what the mechanism changes and timings cannot show reliably: which buffer an
element lands in, and the minor page faults of a process per message.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import pytest

from faasmp.backends import direct
from faasmp.context import FaasContext
from tests import helpers_ipc

MIB = 1 << 20
#: Minor faults per received 1 MiB message allowed: a quarter of the pages a
#: fresh 1 MiB buffer touches.  Without a kept buffer: ~480 per message here.
FAULTS_PER_MESSAGE = 64


def test_a_large_element_reuses_the_threads_buffer_once_recycled(dsm_ctx: FaasContext) -> None:
    ops = dsm_ctx.session.state.direct
    key = dsm_ctx.session.keys.k("test", secrets.token_hex(4))
    first, second, third = os.urandom(MIB), os.urandom(MIB), os.urandom(MIB)
    for data in (first, second, third):
        dsm_ctx.session.state.rpush(key, data)
    a = ops.blpop_buffer(key, 5)
    assert type(a) is memoryview and a == first
    # Not given back yet: the next element must not overwrite it.
    b = ops.blpop_buffer(key, 5)
    assert type(b) is memoryview and b == second and b.obj is not a.obj
    assert a == first, "a receive before recycle() overwrote the element of the one before"
    kept = a.obj
    ops.recycle(a[32:])  # a view of the element (a verified body) gives back the same buffer
    c = ops.blpop_buffer(key, 5)
    assert type(c) is memoryview and c == third
    assert c.obj is kept, "the recycled buffer was not used for the next large element"


def _two_received(ctx: FaasContext) -> tuple[Any, str, memoryview]:
    """Two 1 MiB elements queued, the first received and recycled: (ops, key, the first)."""
    ops = ctx.session.state.direct
    key = ctx.session.keys.k("test", secrets.token_hex(4))
    for _ in range(2):
        ctx.session.state.rpush(key, os.urandom(MIB))
    a = ops.blpop_buffer(key, 5)
    assert type(a) is memoryview
    ops.recycle(a)
    return ops, key, a


def test_a_buffer_over_the_limit_is_not_kept(dsm_ctx: FaasContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "RECEIVE_BUFFER_MAX", MIB // 2)
    ops, key, a = _two_received(dsm_ctx)
    b = ops.blpop_buffer(key, 5)
    assert type(b) is memoryview and b.obj is not a.obj


def test_other_threads_do_not_share_a_receive_buffer(dsm_ctx: FaasContext) -> None:
    import threading

    ops, key, a = _two_received(dsm_ctx)
    seen: list[object] = []

    def other() -> None:
        got = ops.blpop_buffer(key, 5)
        assert type(got) is memoryview
        seen.append(got.obj)

    t = threading.Thread(target=other)
    t.start()
    t.join(30)
    assert seen and seen[0] is not a.obj


@pytest.mark.parametrize("how", ["recv_bytes", "recv", "recv_bytes_into", "queue"])
def test_receiving_large_messages_does_not_fault_in_fresh_pages(shm_ctx: FaasContext, how: str) -> None:
    """A child receives 1 MiB messages (through host files or Redis) and counts its page faults."""
    n = 16
    payload = os.urandom(MIB)
    q = shm_ctx.Queue() if how == "queue" else None
    r, w = shm_ctx.Pipe(duplex=False)
    res_r, res_w = shm_ctx.Pipe(duplex=False)
    child = shm_ctx.Process(
        target=helpers_ipc.count_receive_faults, args=(how, q if q is not None else r, n, res_w)
    )
    child.start()
    try:
        for _ in range(n + 3):
            if q is not None:
                q.put(payload)
            elif how == "recv":
                w.send(payload)
            else:
                w.send_bytes(payload)
        assert res_r.poll(60), "the receiving child sent no result"
        per_message = res_r.recv()
        child.join(30)
        assert child.exitcode == 0
        assert per_message < FAULTS_PER_MESSAGE, (
            f"{per_message:.0f} minor page faults per received 1 MiB message ({how}): "
            f"each one is read into fresh memory"
        )
    finally:
        if child.is_alive():
            child.terminate()
            child.join(10)
        for c in (r, w, res_r, res_w):
            c.close()
        if q is not None:
            q.close()
