"""Pipe/Connection semantics against the stdlib's, locally and with remote processes."""

from __future__ import annotations

import array
import gc
import hashlib
import hmac
import os
import pickle
import re
import secrets
import select
import signal
import threading
import time

import cloudpickle
import pytest

import faasmp
from faasmp.connection import Connection, Pipe, Signer, sign_bytes, verify_bytes, wait
from faasmp.runtime.call import AuthenticationError, PicklingFailed, dumps
from tests import helpers_ipc
from tests.conftest import skip_if_isolated

# --- local semantics ------------------------------------------------------------


def test_duplex_objects_both_ways(ctx):
    a, b = ctx.Pipe()
    a.send({"x": [1, 2.5, "three"]})
    assert b.recv() == {"x": [1, 2.5, "three"]}
    b.send(lambda y: y + 1)  # cloudpickle: lambdas travel
    assert a.recv()(1) == 2
    assert a.readable and a.writable and b.readable and b.writable


def test_send_and_send_bytes_interoperate_like_stdlib(ctx):
    a, b = ctx.Pipe()
    a.send_bytes(pickle.dumps([1, 2]))
    assert b.recv() == [1, 2]
    a.send((3, 4))
    assert pickle.loads(b.recv_bytes()) == (3, 4)
    a.send_bytes(b"")
    assert b.recv_bytes() == b""


def test_send_bytes_offset_size_and_itemsize(ctx):
    a, b = ctx.Pipe()
    a.send_bytes(b"0123456789", 2, 3)
    assert b.recv_bytes() == b"234"
    a.send_bytes(b"0123456789", 7)
    assert b.recv_bytes() == b"789"
    ints = array.array("i", [1, 2, 3])
    a.send_bytes(ints)
    assert b.recv_bytes() == ints.tobytes()
    with pytest.raises(ValueError, match="offset is negative"):
        a.send_bytes(b"abc", -1)
    with pytest.raises(ValueError, match="buffer length < offset"):
        a.send_bytes(b"abc", 4)
    with pytest.raises(ValueError, match="size is negative"):
        a.send_bytes(b"abc", 0, -1)
    with pytest.raises(ValueError, match=r"buffer length < offset \+ size"):
        a.send_bytes(b"abc", 1, 3)
    assert not b.poll()


def test_large_messages_take_the_pipelined_path(dsm_ctx):
    # With the DSM forced (as on cloud backends), large bodies go through
    # Redis; in host mode they go through host files (tests/test_host_messages.py).
    ctx = dsm_ctx
    a, b = ctx.Pipe()
    big = bytes(range(256)) * 4096  # 1 MiB, above the Lua threshold
    a.send_bytes(big)
    a.send({"payload": big})
    a.send(big)  # a top-level bytes/bytearray is pickled as parts, not copied
    a.send(bytearray(big))
    assert b.recv_bytes() == big
    assert b.recv() == {"payload": big}
    got = b.recv()
    assert type(got) is bytes and got == big
    got = b.recv()
    assert type(got) is bytearray and got == big
    b.close()
    with pytest.raises(BrokenPipeError):
        # Large sends do not wait for their reply either: the closed reader
        # shows at the latest on the send after the one that found it gone.
        a.send_bytes(big)
        a.send_bytes(b"small")
    with pytest.raises(BrokenPipeError):
        a.send_bytes(b"small")  # the failure is remembered


def test_sends_that_do_not_wait_still_run_in_program_order(ctx):
    # A send returns before Redis replies; any later command of the thread,
    # on whatever connection, must still see it.
    a, b = ctx.Pipe()
    state = ctx.session.state
    for i in range(5):
        a.send(i)
        assert state.llen(b._rkey) == i + 1  # pooled client
    pipe = state.pipeline()
    pipe.llen(b._rkey)
    a.send(5)
    assert pipe.execute() == [6]  # a pipeline run after the send sees it too
    assert [b.recv() for _ in range(6)] == list(range(6))


def test_recv_bytes_maxlength(ctx):
    a, b = ctx.Pipe()
    with pytest.raises(ValueError, match="negative maxlength"):
        b.recv_bytes(-1)
    a.send_bytes(b"12345")
    assert b.recv_bytes(5) == b"12345"
    a.send_bytes(b"123456")
    with pytest.raises(OSError, match="bad message length"):
        b.recv_bytes(5)
    # As in the stdlib, a duplex end stops being readable (a read-only one closes).
    assert not b.readable
    with pytest.raises(OSError, match="write-only"):
        b.recv()
    r, w = ctx.Pipe(duplex=False)
    w.send_bytes(b"too long")
    with pytest.raises(OSError, match="bad message length"):
        r.recv_bytes(2)
    assert r.closed


def test_recv_bytes_into_and_buffer_too_short(ctx):
    a, b = ctx.Pipe()
    buf = bytearray(10)
    a.send_bytes(b"abc")
    assert b.recv_bytes_into(buf, 2) == 3
    assert buf == bytearray(b"\0\0abc\0\0\0\0\0")
    ints = array.array("i", [0, 0, 0, 0])
    a.send_bytes(array.array("i", [7, 8]))
    assert b.recv_bytes_into(ints, ints.itemsize) == 2 * ints.itemsize
    assert ints.tolist() == [0, 7, 8, 0]
    a.send_bytes(b"0123456789xyz")
    with pytest.raises(multiprocessing_buffer_too_short()) as info:
        b.recv_bytes_into(bytearray(4))
    assert info.value.args[0] == b"0123456789xyz"  # the message travels with the error
    with pytest.raises(ValueError, match="negative offset"):
        b.recv_bytes_into(buf, -1)
    with pytest.raises(ValueError, match="offset too large"):
        b.recv_bytes_into(buf, 11)


def multiprocessing_buffer_too_short() -> type[Exception]:
    import multiprocessing  # noqa: PLC0415

    assert faasmp.BufferTooShort is multiprocessing.BufferTooShort
    return multiprocessing.BufferTooShort


def test_poll_is_non_destructive_and_times_out(ctx):
    a, b = ctx.Pipe()
    assert b.poll() is False
    t0 = time.monotonic()
    assert b.poll(0.2) is False
    assert time.monotonic() - t0 >= 0.15
    a.send("m1")
    assert b.poll() is True
    assert b.poll(1) is True  # still there: poll never takes a message
    assert b.recv() == "m1"
    helpers_ipc.later(0.2, a.send, "m2")
    assert b.poll(10) is True
    assert b.poll(None) is True
    assert b.recv() == "m2"


def test_poll_timeout_does_not_lose_a_message_sent_meanwhile(ctx):
    a, b = ctx.Pipe()

    def sender() -> None:
        for i in range(20):
            time.sleep(0.004)
            a.send(i)

    t = threading.Thread(target=sender)
    t.start()
    while t.is_alive():
        b.poll(0.003)  # often times out just as a message arrives
    t.join()
    assert [b.recv() for _ in range(20)] == list(range(20))
    assert not b.poll()


def test_simplex_ends(ctx):
    r, w = ctx.Pipe(duplex=False)
    assert (r.readable, r.writable, w.readable, w.writable) == (True, False, False, True)
    with pytest.raises(OSError, match="connection is read-only"):
        r.send(1)
    with pytest.raises(OSError, match="connection is write-only"):
        w.recv()
    with pytest.raises(OSError, match="connection is write-only"):
        w.poll()
    w.send_bytes(b"one way")
    assert r.recv_bytes() == b"one way"


def test_closed_handle(ctx):
    a, b = ctx.Pipe()
    a.close()
    a.close()  # idempotent, like the stdlib
    assert a.closed and not b.closed
    for call in (lambda: a.send(1), a.recv, a.poll, a.recv_bytes, a.fileno, lambda: a.send_bytes(b"x")):
        with pytest.raises(OSError, match="handle is closed"):
            call()
    with b:
        pass
    assert b.closed


def test_fileno_explains_there_is_no_descriptor(ctx):
    a, _ = ctx.Pipe()
    with pytest.raises(OSError, match=r"no file descriptor.*wait\(\)"):
        a.fileno()


def test_eof_and_broken_pipe_after_the_other_end_closes(ctx):
    a, b = ctx.Pipe()
    a.send(1)
    a.send(2)
    a.close()
    assert b.recv() == 1  # messages sent before close are still delivered
    assert b.poll() is True
    assert b.recv() == 2
    assert b.poll() is True  # EOF counts as readable
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(EOFError):  # and stays so
        b.recv_bytes()
    with pytest.raises(BrokenPipeError):
        # A small send does not wait for its reply: like a socket, the error
        # shows at the latest on the next send.
        b.send("nobody reads this")
        b.send("reported by now")


def test_blocked_recv_returns_eof_when_the_other_end_closes(ctx):
    r, w = ctx.Pipe(duplex=False)
    helpers_ipc.later(0.3, w.close)
    t0 = time.monotonic()
    with pytest.raises(EOFError):
        r.recv()
    assert time.monotonic() - t0 < 10


def test_garbage_collected_end_counts_as_closed(ctx):
    r, w = ctx.Pipe(duplex=False)
    w.send("last words")
    del w
    gc.collect()
    assert r.recv() == "last words"
    with pytest.raises(EOFError):
        r.recv()


def test_pickled_copy_keeps_its_end_open(ctx):
    r, w = ctx.Pipe(duplex=False)
    blob = cloudpickle.dumps(w)
    w.close()  # like closing the parent's copy right after Process.start()
    assert r.poll() is False  # not EOF: the copy in flight still holds the end
    copy = pickle.loads(blob)
    assert isinstance(copy, Connection) and copy.writable and not copy.readable
    copy.send("via copy")
    assert r.recv() == "via copy"
    copy.close()
    with pytest.raises(EOFError):
        r.recv()
    with pytest.raises(OSError, match="handle is closed"):
        cloudpickle.dumps(copy)


def test_keys_are_deleted_when_every_handle_is_closed(ctx):
    a, b = ctx.Pipe()
    a.send("unread")
    state = ctx.session.state
    pattern = a.key("*")
    assert list(state.scan_keys(pattern))
    a.close()
    assert list(state.scan_keys(pattern))  # b may still read
    b.close()
    assert list(state.scan_keys(pattern)) == []


def test_tampered_message_is_refused(ctx):
    a, b = ctx.Pipe()
    ctx.session.state.rpush(b._rkey, b"\0" * 32 + pickle.dumps("forged"))
    with pytest.raises(AuthenticationError):
        b.recv()
    a.send("genuine")
    assert b.recv() == "genuine"


def test_sign_and_verify_bytes_match_the_payload_format(ctx):
    key = ctx.session.authkey
    signed = sign_bytes(b"raw", key)
    assert bytes(verify_bytes(signed, key)) == b"raw"
    assert pickle.loads(verify_bytes(dumps("obj", key), key)) == "obj"
    with pytest.raises(AuthenticationError):
        verify_bytes(signed, b"another key" * 3)
    with pytest.raises(AuthenticationError, match="too short"):
        verify_bytes(b"short", key)


@pytest.mark.parametrize("key", [b"", b"k" * 32, bytes(range(64)), b"long" * 40])
def test_signer_computes_the_standard_macs(key):
    """Small bodies: HMAC-SHA256(key, body); large ones: nonce || Poly1305 under a one-time key.

    Both are recomputed here from their definitions (RFC 2104; RFC 8439's
    Poly1305 with k = HMAC-SHA256(SHA-256(label || key), nonce)).
    """
    from cryptography.hazmat.primitives.poly1305 import Poly1305  # noqa: PLC0415

    from faasmp.runtime import call  # noqa: PLC0415

    signer = Signer(key)
    small = (b"", b"x", bytes(range(256)) * 31)
    for data in small:
        assert len(data) < call.POLY1305_MIN
        assert signer.mac(data) == hmac.new(key, data, hashlib.sha256).digest()
        assert signer.mac(memoryview(data)) == signer.mac(data)
    poly_root = hashlib.sha256(call._POLY_KEY_LABEL + key).digest()
    for data in (bytes(range(256)) * 32, bytes(range(256)) * 4096):
        tag = signer.mac(data)
        assert len(tag) == 32
        one_time = hmac.new(poly_root, tag[:16], hashlib.sha256).digest()
        Poly1305.verify_tag(one_time, data, tag[16:])  # raises if it is not that MAC
        assert signer.mac(data)[:16] != tag[:16], "a fresh nonce per message"
        assert signer.check(signer.mac(memoryview(data)), data)
    assert bytes(signer.verify(signer.sign(b"body"))) == b"body"


def test_large_payloads_are_refused_when_tampered_or_signed_with_another_key():
    """The Poly1305 path authenticates as the HMAC path does: body, nonce and tag all count."""
    from faasmp.runtime import call  # noqa: PLC0415

    signer, other = Signer(b"k" * 32), Signer(b"j" * 32)
    body = os.urandom(call.POLY1305_MIN * 8)
    signed = bytearray(signer.sign(body))
    assert bytes(signer.verify(signed)) == body
    for where in (0, 20, 40, len(signed) - 1):  # nonce, tag, body start, body end
        forged = bytearray(signed)
        forged[where] ^= 1
        with pytest.raises(AuthenticationError):
            signer.verify(forged)
    with pytest.raises(AuthenticationError):
        signer.verify(other.sign(body))
    # A small body's HMAC tag is never taken as a large body's tag, nor the reverse.
    with pytest.raises(AuthenticationError):
        signer.verify(signer.mac(b"x") + body)
    head, tail = body[:100], body[100:]
    assert signer.check(signer.mac_parts((head, memoryview(tail))), body)
    assert signer.check(signer.mac_parts((b"a", b"b")), b"ab")


def test_unpicklable_object_names_the_pipe(ctx):
    a, _ = ctx.Pipe()
    with pytest.raises(PicklingFailed, match=r"sent on <faasmp\.connection\.Connection"):
        a.send(threading.Lock())


def test_os_level_connections_and_listeners_fail_fast_naming_the_object(ctx):
    """Issue 14: CPython's test_pickling sent a multiprocessing.connection.Connection.

    cloudpickle pickled it as its bare file descriptor number; the receiver
    then read an unrelated descriptor of its own and blocked until killed.
    """
    import multiprocessing.connection as mpc  # noqa: PLC0415

    a, b = ctx.Pipe()
    r, w = mpc.Pipe()
    listener = mpc.Listener()
    try:
        fd_error = (
            r"cannot pickle 'multiprocessing\.connection\.Connection' object: "
            r"it is an OS-level connection \(file descriptor \d+\)"
        )
        with pytest.raises(TypeError, match=fd_error):
            a.send(r)
        where = re.escape(repr(listener.address))
        with pytest.raises(
            TypeError, match=rf"'multiprocessing\.connection\.Listener' object: it listens on {where}"
        ):
            a.send({"listener": listener})
        with pytest.raises(TypeError, match=fd_error):
            ctx.Process(target=helpers_ipc.echo, args=(w,)).start()
        a.send("still usable")  # nothing half-sent
        assert b.recv() == "still usable"
        assert not b.poll(0)
    finally:
        for c in (r, w, listener):
            c.close()


def test_remote_process_sending_an_os_connection_fails_and_the_reader_gets_eof(ctx, capsys):
    """The same from a remote process, as in CPython's test: an error there, never a hang here."""
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=helpers_ipc.send_os_connection, args=(w,))
    p.start()
    w.close()
    assert r.poll(60), "the reader neither got a message nor end of file"
    with pytest.raises(EOFError):
        r.recv()
    p.join(30)
    assert p.exitcode == 1
    assert "cannot pickle 'multiprocessing.connection.Connection' object" in capsys.readouterr().err


def test_eof_when_the_remote_writer_exits_without_ever_using_its_end(ctx):
    """A copy unpickled in a Process is released when it ends, used or not (it held the end forever)."""
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=helpers_ipc.ignore_args, args=(w,))
    p.start()
    w.close()
    assert r.poll(60), "the reader never got end of file"
    with pytest.raises(EOFError):
        r.recv()
    p.join(30)
    assert p.exitcode == 0


def test_bad_arguments(ctx):
    with pytest.raises(TypeError, match="duplex must be a bool"):
        Pipe("yes", ctx=ctx)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"created by faasmp\.Pipe"):
        Connection()
    with pytest.raises(TypeError, match="cannot wait on 42"):
        wait([42])


def test_wait_on_connections(ctx):
    a, b = ctx.Pipe()
    c, d = ctx.Pipe()
    assert wait([b, d], timeout=0.2) == []
    assert wait([b, d], timeout=0) == []
    helpers_ipc.later(0.2, c.send, "to d")
    assert wait([b, d], timeout=10) == [d]
    assert wait([b, d], timeout=0) == [d]  # still unread
    assert d.recv() == "to d"
    helpers_ipc.later(0.2, a.close)
    assert wait([b, d], timeout=10) == [b]  # EOF makes it ready
    b.close()
    with pytest.raises(OSError, match="handle is closed"):
        wait([b])


def test_wait_is_woken_by_the_send_itself(ctx, monkeypatch):
    """A send to an end a wait() waits on publishes: wait() does not sleep until its re-check.

    Sends publish only while a wait() is registered on the end (a send with
    nobody waiting runs no PUBLISH); the re-check interval is made longer
    than the test's patience, so only the publish can wake it in time.
    """
    monkeypatch.setattr(faasmp.connection, "_WAIT_CAP", 60.0)
    a, b = ctx.Pipe()
    helpers_ipc.later(0.3, a.send, "wake")
    t0 = time.monotonic()
    assert wait([b], timeout=120) == [b]
    assert time.monotonic() - t0 < 30, "wait() slept until its re-check: the send did not publish"
    assert b.recv() == "wake"
    # The registration is gone with the wait(): later sends publish nothing.
    assert ctx.session.state.exists(b._waiters) == 0


def test_wait_is_woken_by_a_large_send_through_redis(dsm_ctx, monkeypatch):
    """The same for a large message with the DSM forced: its batch of plain commands publishes too.

    Each send comes from a thread that ends right after it: the batch is
    deferred, and a thread's end must read its replies before its connection
    closes (the server dropped the unread batch's PUBLISH with the client).
    """
    monkeypatch.setattr(faasmp.connection, "_WAIT_CAP", 60.0)
    a, b = dsm_ctx.Pipe()
    big = os.urandom(1 << 20)
    for i in range(4):
        helpers_ipc.later(0.3, a.send_bytes, big)
        t0 = time.monotonic()
        assert wait([b], timeout=120) == [b]
        assert time.monotonic() - t0 < 30, f"send {i}: wait() slept until its re-check: no publish"
        assert b.recv_bytes() == big


def test_wait_sees_a_send_made_while_it_subscribes(ctx, monkeypatch):
    """The lost-wakeup race: a send after wait()'s registration but before its subscription.

    That send publishes to nobody; wait() must find the message by checking
    again once subscribed.  (The fault is injected: the send runs inside
    the subscribe call, before the subscription exists.)
    """
    monkeypatch.setattr(faasmp.connection, "_WAIT_CAP", 60.0)
    a, b = ctx.Pipe()
    state = ctx.session.state
    subscribe = state.subscribe
    sent = []

    def send_then_subscribe(*channels):
        assert state.exists(b._waiters) == 1, "wait() subscribed before registering"
        a.send("in the gap")
        state.direct.flush()  # the send has run in Redis
        sent.append(True)
        return subscribe(*channels)

    monkeypatch.setattr(state, "subscribe", send_then_subscribe)
    t0 = time.monotonic()
    assert wait([b], timeout=120) == [b]
    assert sent
    assert time.monotonic() - t0 < 30, "wait() missed a message sent while it subscribed"
    assert b.recv() == "in the gap"


def test_a_list_recreated_between_ttl_renewals_still_carries_a_ttl(ctx):
    """Sends renew TTLs every key_ttl/10 s, but the send whose push creates the list sets one."""
    a, b = ctx.Pipe()
    a.send("first")  # renews every TTL
    assert b.recv() == "first"  # the list is gone with its last message
    assert ctx.session.state.exists(b._rkey) == 0
    a.send("second")  # long before the next renewal
    ctx.session.state.direct.flush()
    assert ctx.session.state._r.pttl(b._rkey) > 0  # test-only peek at the redis-py client
    assert b.recv() == "second"


def test_wait_registration_goes_with_the_last_handle_of_its_end(ctx):
    """A registration left by a wait() must not make a closed reader look open to a sender."""
    a, b = ctx.Pipe()
    state = ctx.session.state
    state.sadd(b._waiters, "a waiter that died")
    b.close()
    assert state.exists(b._waiters) == 0
    with pytest.raises(BrokenPipeError):  # at the latest on the send after the one that found it
        a.send("first")
        a.send("second")


def test_a_dead_readers_wait_registration_goes_when_its_end_is_found_dead(ctx):
    """A process that died inside wait() leaves its registration; finding its end dead removes it.

    (The fault is injected: the reader's handle is bound to a process
    record that says "exited", as a killed remote Process leaves it.)
    """
    a, b = ctx.Pipe()
    state = ctx.session.state
    state.hset(b._own_h, {b._holder: "dead-proc"})
    state.hset(f"{ctx.session.keys.prefix}proc:dead-proc", {"state": "exited"})
    state.sadd(b._waiters, "the dead process' wait()")
    assert a.poll(0)  # end of file: b's only handle died with its process
    with pytest.raises(EOFError):
        a.recv()
    assert state.exists(b._waiters) == 0
    with pytest.raises(BrokenPipeError):  # at the latest on the send after the one that found it
        a.send("first")
        a.send("second")


# --- with remote processes ------------------------------------------------------


def test_ping_pong_with_a_remote_process(ctx):
    a, b = ctx.Pipe()
    p = ctx.Process(target=helpers_ipc.echo, args=(b,))
    p.start()
    b.close()  # the child's copy keeps its end open
    for msg in [1, "two", {"three": 3}, b"\x00" * 100_000, list(range(50))]:
        a.send(msg)
        assert a.recv() == msg
    a.send("stop")
    with pytest.raises(EOFError):  # the child closed its end after "stop"
        a.recv()
    p.join(30)
    assert p.exitcode == 0


def test_eof_when_the_remote_writer_closes(ctx):
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=helpers_ipc.send_range, args=(w, 5))
    p.start()
    w.close()
    got = []
    while True:
        try:
            got.append(r.recv())
        except EOFError:
            break
    assert got == [0, 1, 2, 3, 4]
    p.join(30)


def test_eof_when_the_remote_writer_exits_without_closing(ctx):
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=helpers_ipc.send_range, args=(w, 3, False))
    p.start()
    w.close()
    assert [r.recv() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(EOFError):  # the process ended: its copy is released
        r.recv()
    p.join(30)
    assert p.exitcode == 0


def test_eof_when_the_remote_writer_is_killed(ctx):
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=helpers_ipc.send_then_sleep, args=(w, "hello"))
    p.start()
    w.close()
    assert r.recv() == "hello"
    assert not r.poll(0.3)  # alive and holding its end: no EOF
    p.kill()
    p.join(30)
    assert r.poll(10) is True
    with pytest.raises(EOFError):
        r.recv()


def test_pipe_created_remotely_is_usable_by_the_client(ctx):
    out = ctx.Queue()
    p = ctx.Process(target=helpers_ipc.make_pipe_and_send_back, args=(out, "made remotely"))
    p.start()
    r = out.get(timeout=30)
    assert r.recv() == "made remotely"
    p.join(30)
    with pytest.raises(EOFError):
        r.recv()


def test_wait_mixes_connections_and_sentinels(ctx):
    a, b = ctx.Pipe()
    sleeper = ctx.Process(target=helpers_ipc.send_then_sleep, args=(b, "first"))
    sleeper.start()
    assert a.recv() == "first"  # the sleeper runs
    sender = ctx.Process(target=helpers_ipc.sleep_then_send, args=(b, 0.2, "ready"))
    sender.start()
    ready = wait([a, sleeper.sentinel], timeout=30)
    assert ready == [a]
    assert a.recv() == "ready"
    sleeper.kill()
    ready = wait([sleeper.sentinel], timeout=30)
    assert [s.process for s in ready] == [sleeper]
    sender.join(30)
    sleeper.join(30)


def test_connection_passed_to_a_pool_worker(ctx):
    r, w = ctx.Pipe(duplex=False)
    with ctx.Pool(1) as pool:
        assert pool.apply(helpers_ipc.pool_send, (w, 42)) == "sent"
    assert r.recv() == 42


@pytest.mark.parametrize(
    "size", [0, 1, 31, 32, 33, 32_767, 32_768, 65_503, 65_504, 65_505, 65_536, 200_003, (1 << 20) + 7]
)
def test_messages_of_every_size_around_the_read_boundaries_arrive_intact(shm_ctx, size):
    # Around the Lua threshold (64 KiB with the 32-byte signature), the
    # 64 KiB first read of a popped element, and a send whose deferred reply
    # arrives together with the next pop's; in host mode also around the
    # size from which bodies go through host files (32 KiB).
    ctx = shm_ctx
    a, b = ctx.Pipe()
    data = os.urandom(size)
    a.send_bytes(data)
    assert b.recv_bytes() == data
    b.send_bytes(data)
    a.send(("ack", size))  # deferred: its reply is read with the next pop
    assert a.recv_bytes() == data
    assert b.recv() == ("ack", size)


def test_a_popped_element_is_read_into_one_buffer_not_through_the_parser(ctx):
    skip_if_isolated(ctx, "over TLS the raw socket carries ciphertext: the parser reads every reply")
    # hiredis copies a reply from its 32 KiB buffer into a bytes object (~1.5 ms
    # of CPU per MiB here); blpop_buffer receives the element straight into
    # one buffer (the thread's receive buffer: tests/test_receive_buffers.py).
    state = ctx.session.state
    key = ctx.session.keys.k("test", secrets.token_hex(4))
    big = os.urandom(1 << 20)
    state.rpush(key, big)
    got = state.direct.blpop_buffer(key, 5)
    assert type(got) is memoryview and type(got.obj) is bytearray and got == big
    assert state.direct.blpop_buffer(key, 0.01) is None  # a timeout is None, as BLPOP's


@pytest.mark.parametrize("piece", [1, 3, 1 << 16])
def test_raw_reply_readers_take_replies_split_anywhere_and_consume_all_of_them(piece):
    """The raw RESP readers (pipe pops, shared-memory attaches) over a real socket pair.

    The server's bytes arrive in pieces of *piece* bytes, so headers, values
    and CRLFs are split at every place; a reader must consume its replies to
    their last CRLF (what it leaves would be taken as the next command's reply).
    """
    import socket
    import threading

    from faasmp.backends.resp import _read_bulk_replies, _read_pop_reply

    big = bytes(range(256)) * 300
    bulk = b"$5\r\nhello\r\n$-1\r\n_\r\n$0\r\n\r\n$" + str(len(big)).encode() + b"\r\n" + big + b"\r\n"
    pop = b"*2\r\n$3\r\nkey\r\n$" + str(len(big)).encode() + b"\r\n" + big + b"\r\n"
    after = b"+NEXT\r\n"
    ours, theirs = socket.socketpair()
    try:

        def send(data: bytes) -> None:
            for i in range(0, len(data), piece):
                theirs.sendall(data[i : i + piece])

        for stream, read in (
            (bulk, lambda: _read_bulk_replies(ours, 5)),
            (pop, lambda: _read_pop_reply(ours, bytearray(ours.recv(4)))),
        ):
            writer = threading.Thread(target=send, args=(stream,))
            writer.start()
            got = read()
            writer.join(10)
            theirs.sendall(after)
            assert ours.recv(len(after)) == after, "the reader left bytes of its replies in the socket"
            if stream is bulk:
                assert got == [b"hello", None, None, b"", big]
            else:
                assert got == big
    finally:
        ours.close()
        theirs.close()


# --- the direct connection's system-call diet (backends/state.py) ---------------


def test_forked_child_opens_its_own_direct_connection(ctx):
    """A child forked after the parent used a connection must not talk on the parent's socket.

    The child forgets the parent's per-thread connections at the fork (an
    ``os.register_at_fork`` hook) instead of checking ``os.getpid()`` on
    every command; here the child's connection must be a new Redis client.
    """
    skip_if_isolated(ctx, "CLIENT ID is not among the commands faasmp's ACL user may run")
    direct = ctx.session.state.direct
    parent_id = direct.execute("CLIENT", "ID")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its own client id, then leave at once
        code = 1
        try:
            os.write(w, b"%d" % direct.execute("CLIENT", "ID"))
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    child_id = -1
    try:
        ready, _, _ = select.select([r], [], [], 30)  # a child stuck after the fork: fail, not hang
        child_id = int(os.read(r, 64) or b"-1") if ready else -1
    finally:
        os.close(r)
        if child_id == -1:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    assert child_id != -1, "the forked child did not answer within 30 s"
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_id not in (-1, parent_id), f"the child used client {child_id}, the parent {parent_id}"
    assert direct.execute("CLIENT", "ID") == parent_id  # the parent's connection is intact


def test_small_pop_reply_is_taken_only_when_whole():
    """A BLPOP reply parsed without the parser: only one whole small reply, nothing more or less."""
    from faasmp.backends.resp import _SMALL_REPLY, _whole_small_pop  # noqa: PLC0415

    reply = b"*2\r\n$4\r\nk:d0\r\n$5\r\nhello\r\n"
    assert _whole_small_pop(reply) == b"hello"
    assert _whole_small_pop(b"*2\r\n$4\r\nk:d0\r\n$0\r\n\r\n") == b""
    for partial in (reply[:-1], reply[:-3], reply[:12], reply + b":1\r\n"):
        assert _whole_small_pop(partial) is None, partial
    assert _whole_small_pop(b"*-1\r\n") is None  # a timeout: the parser reads it
    assert _whole_small_pop(b"-ERR wrong\r\n") is None  # an error: the parser raises it
    big = b"x" * (_SMALL_REPLY + 1)
    assert _whole_small_pop(b"*2\r\n$1\r\nk\r\n$%d\r\n%b\r\n" % (len(big), big)) is None


@pytest.mark.parametrize("size", [1, 40_000, 200_000])
def test_deferred_send_replies_and_pops_share_one_connection_in_order(ctx, size):
    """Sends (deferred replies) and receives of one thread interleave on one connection.

    The read of a deferred reply may fetch the next reply's bytes too (a
    message already waiting): they go to the parser, in order, for small
    and large messages alike.
    """
    a, b = ctx.Pipe()
    payloads = [bytes([i % 251]) * size for i in range(30)]
    for p in payloads[:10]:
        b.send_bytes(p)  # already waiting when a receives
    for i, p in enumerate(payloads[10:]):
        a.send_bytes(p)  # deferred: its reply is read with a's next command
        assert a.recv_bytes() == payloads[i]
        b.send_bytes(b.recv_bytes())  # echo a's message back: a's list never empties
    for p in payloads[20:]:
        assert a.recv_bytes() == p
    a.send_bytes(b"end")
    assert b.recv_bytes() == b"end"
    assert not a.poll(0) and not b.poll(0)
