"""The reply wait busy-polls before it sleeps, and backs off when replies are slow (issue 16).

On a virtual machine, waking a thread that sleeps in ``poll()`` on an idle
core costs more than a loopback reply itself (docs/performance.md, "The reply
wait").  A thread therefore tries non-blocking reads for a short window
first; a connection whose waits are long (a pop waiting for a message) spins
on fewer and fewer of them.  The counters say which replies were taken while
spinning: no timing is asserted.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time

import pytest
import redis

from faasmp.backends.resp import ReplySpin, SpinCounter
from faasmp.backends.state import open_state
from faasmp.context import FaasContext
from tests.conftest import skip_if_isolated

#: A CLIENT LIST line of the test's own connection while it is blocked.
_BLOCKED_WAITER = re.compile(rb"\bname=faasmp-test-spin .*\bflags=[A-Za-z]*b")


@pytest.fixture
def state(ctx: FaasContext):  # type: ignore[no-untyped-def]
    """A state backend of its own on the run's server: its counters see only this test's commands."""
    skip_if_isolated(ctx, "TLS connections are read by the parser (no busy-poll)")
    ctx.session.state.ping()  # the embedded server has started (its first users wait for it)
    own = open_state(ctx.session.url, client_name="faasmp-test-spin")
    yield own
    own.close()


def test_replies_that_come_within_the_window_are_taken_without_sleeping(state):
    direct = state.direct
    direct.execute("PING")  # connect
    counter = direct.spin_counter
    hits0 = counter.hits
    for _ in range(200):
        assert direct.execute("PING") == b"PONG"
    # A loopback reply takes ~10-30 us; a busy machine may miss the window at
    # times (then the spin backs off), but not on all of 200 commands.
    hits = counter.hits - hits0
    assert hits > 0, f"no reply of 200 PINGs was taken while spinning ({counter.misses} misses)"


def test_a_window_of_zero_never_spins(state):
    direct = state.direct
    direct.execute("PING")
    direct.spin_window = 0
    counter = direct.spin_counter
    before = (counter.hits, counter.misses)
    for _ in range(50):
        direct.execute("PING")
    assert (counter.hits, counter.misses) == before
    with pytest.raises(ValueError, match="spin_window must be >= 0"):
        direct.spin_window = -1.0


def test_long_waits_spin_only_now_and_then(state):
    """Thirty pops that each wait ~2 ms for their item: the spin runs out on a few, not on 30.

    Backing off 1, 2, 4, 8, 16 waits after each miss makes 5 misses in 30
    waits; a pop whose item came early (a descheduled waiter) is a hit and
    halves the backoff, hence the margin.  Without the backoff: 30 misses.
    """
    direct = state.direct
    direct.execute("PING")
    counter = direct.spin_counter
    key = f"faasmp-test-spin-{secrets.token_hex(4)}"
    pusher = open_state(state.url, client_name="faasmp-test-spin-pusher")
    stop = threading.Event()

    def waiter_blocked() -> bool:
        # The waiter's own connection (by name), blocked in Redis: a "b" among its flags.
        listing = pusher.direct.execute("CLIENT", "LIST")
        return any(_BLOCKED_WAITER.search(line) for line in listing.splitlines())

    try:
        waiter_blocked()
    except redis.exceptions.NoPermissionError:
        pusher.close()
        pytest.skip("CLIENT LIST is not among this Redis user's commands")

    def push_when_blocked() -> None:
        # Push only once the waiter is blocked in Redis, and 2 ms later:
        # the reply cannot come within the waiter's 50 us window.
        while not stop.is_set():
            if waiter_blocked():
                time.sleep(0.002)
                pusher.direct.execute("RPUSH", key, b"x")
                while int(pusher.direct.execute("LLEN", key)) and not stop.is_set():
                    time.sleep(0.0005)  # until popped: one item per wait
            else:
                time.sleep(0.0002)

    thread = threading.Thread(target=push_when_blocked, daemon=True)
    thread.start()
    misses0 = counter.misses
    try:
        for _ in range(30):
            assert direct.blpop_buffer(key, 5.0) == b"x"
    finally:
        stop.set()
        thread.join(10)
        pusher.direct.execute("DEL", key)
        pusher.close()
    misses = counter.misses - misses0
    assert 1 <= misses <= 10, f"{misses} of 30 long waits spun until the window ran out"
    # A fast command on the same connection still spins: its own backoff.
    hits0 = counter.hits
    for _ in range(50):
        direct.execute("PING")
    assert counter.hits > hits0


def test_a_reply_larger_than_the_spins_read_is_completed_by_the_parser(state):
    direct = state.direct
    key = f"faasmp-test-spin-{secrets.token_hex(4)}"
    value = secrets.token_bytes(1 << 20)
    try:
        direct.execute("SET", key, value)
        for _ in range(3):
            assert direct.execute("GET", key) == value
            assert direct.execute("PING") == b"PONG"  # the stream stays in step
    finally:
        direct.execute("DEL", key)


def test_the_spin_backs_off_when_it_runs_out_and_recovers_when_replies_come():
    """On a socket pair: a reply that is not there costs one window, then skipped waits."""
    a, b = socket.socketpair()
    a.setblocking(False)
    counter = SpinCounter()
    spin = ReplySpin(20e-6, counter)
    try:
        assert spin.read(a.fileno(), 100) is None  # nothing sent: the window runs out
        assert (counter.misses, spin.skip, spin.backoff) == (1, 1, 2)
        assert spin.read(a.fileno(), 100) is None  # sat out: no read at all
        assert (counter.misses, spin.skip) == (1, 0)
        assert spin.read(a.fileno(), 100) is None
        assert (counter.misses, spin.skip, spin.backoff) == (2, 2, 4)
        b.sendall(b"+OK\r\n")
        spin.skip = 0
        assert spin.read(a.fileno(), 100) == b"+OK\r\n"
        assert (counter.hits, spin.backoff) == (1, 2)  # a hit halves the backoff
        b.close()
        assert spin.read(a.fileno(), 100) == b""  # closed: the caller raises
    finally:
        a.close()
        b.close()


def test_an_error_reply_taken_while_spinning_raises_as_before(state):
    direct = state.direct
    key = f"faasmp-test-spin-{secrets.token_hex(4)}"
    try:
        direct.execute("SET", key, b"v")
        for _ in range(20):  # the reply is usually taken while spinning: still raised, typed
            with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
                direct.execute("HGET", key, b"f")
            assert direct.execute("PING") == b"PONG"  # the stream stays in step
    finally:
        direct.execute("DEL", key)


def test_a_command_with_fixed_arguments(state):
    direct = state.direct
    key = f"faasmp-test-spin-{secrets.token_hex(4)}"
    hget = direct.command("HGET", key)
    try:
        direct.execute("HSET", key, b"f", b"v")
        assert hget(b"f") == b"v"
        assert hget("f") == b"v"
        assert hget(b"missing") is None
        assert direct.command("HLEN", key)() == 1
    finally:
        direct.execute("DEL", key)
    with pytest.raises(ValueError, match="BLPOP is a blocking command"):
        direct.command("BLPOP", key)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_a_process_on_one_cpu_does_not_spin(ctx):
    """On one CPU a spin would only hold the core the server needs to answer."""
    skip_if_isolated(ctx, "TLS connections are read by the parser (no busy-poll)")
    ctx.session.state.ping()
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        one = open_state(ctx.session.url, client_name="faasmp-test-spin-one-cpu")
    finally:
        os.sched_setaffinity(0, before)
    try:
        assert one.direct.spin_window == 0
        for _ in range(20):
            assert one.direct.execute("PING") == b"PONG"
        assert (one.direct.spin_counter.hits, one.direct.spin_counter.misses) == (0, 0)
    finally:
        one.close()
    if len(before) > 1:
        two = open_state(ctx.session.url, client_name="faasmp-test-spin-cpus")
        try:
            assert two.direct.spin_window > 0
        finally:
            two.close()
