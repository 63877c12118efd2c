"""A program's first Pool() does not wait for the embedded server; its first use does.

The embedded server answers ~35 ms after it is spawned (valkey calibrates its
clock at start-up), most of a cold ``Pool(8)``.  The run therefore starts in
the background: ``Pool()`` returns at once, and the first operation that needs
Redis waits for the server, or raises the server's own error.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from faasmp.backends.server import find_server_binary
from faasmp.backends.state import StateError
from faasmp.context import FaasContext
from tests.conftest import TEST_SETTINGS


def _launcher(tmp_path: Path, body: str) -> str:
    """An executable shell script standing in for the server binary (the config comes on stdin)."""
    path = tmp_path / "server.sh"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def slow_server_ctx(tmp_path: Path) -> Iterator[FaasContext]:
    """A context whose embedded server starts 1 s late (injected fault: a launcher that sleeps first)."""
    binary = _launcher(tmp_path, f'sleep 1\nexec "{find_server_binary()}" "$@"')
    ctx = FaasContext(redis_server=binary, **TEST_SETTINGS)
    yield ctx
    ctx.shutdown()


@pytest.mark.timeout(120)
def test_the_first_pool_returns_before_a_slow_fake_server_answers_and_then_works(
    slow_server_ctx: FaasContext,
) -> None:
    ctx = slow_server_ctx
    pool = ctx.Pool(2)
    try:
        session = ctx.session
        # Pool() returned while the server was still asleep: nothing waited for it.
        assert not session.server._ping(), "Pool() waited for the embedded server to answer"
        assert not session.started
        # The first submit waits for the server, then the pool works as usual.
        assert pool.map(abs, [-1, -2, -3]) == [1, 2, 3]
        assert session.started
        assert pool.apply(divmod, (7, 2)) == (3, 1)
    finally:
        pool.terminate()


@pytest.mark.timeout(60)
def test_a_failing_fake_server_is_reported_by_the_first_operation_that_needs_it(tmp_path: Path) -> None:
    binary = _launcher(tmp_path, 'cat >/dev/null\necho "fake server: cannot open the socket" >&2\nexit 3')
    ctx = FaasContext(redis_server=binary, **TEST_SETTINGS)
    try:
        pool = ctx.Pool(2)  # returns: the server's failure is not known yet
        with pytest.raises(StateError, match="exited with code 3") as info:
            pool.map(abs, [-1])
        assert "fake server: cannot open the socket" in str(info.value)
        assert "cannot reach Redis" in str(info.value)
        pool.terminate()  # a broken pool terminates without raising
        # The failed run is over: the next use starts a new one, which fails the same way.
        queue = ctx.Queue()
        with pytest.raises(StateError, match="exited with code 3"):
            queue.put(1)
        proc = ctx.Process(target=abs, args=(1,))
        with pytest.raises(StateError, match="fake server: cannot open the socket"):
            proc.start()
    finally:
        ctx.shutdown()
