"""A Pool task and a Process start+join cost the client their floor: 2 round trips each.

Counted as requests this process writes to Redis (``StateBackend.statistics``),
every thread included (the pool's result handler, the output listener), with
no shared memory alive (with some, a result or a join is also an acquire of
it: one pull more, see docs/performance.md).  The floors:

* a Pool task: the submit, and the handler's one blocking pop that takes the
  result (``BLMPOP``: no poll before it, nor after a result);
* a Process: the start (one script: record, queued call, capacity), and the
  join's wait, which reads the exit record in the same write (so a process
  that printed nothing leaves no end-of-output marker for the output listener
  to take, and nothing for join to wait for).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from faasmp.backends.redis.pool import PoolResultsQueue
from faasmp.context import FaasContext
from tests.conftest import TEST_SETTINGS, ExternalServer


@pytest.fixture(scope="module")
def quiet_ctx() -> Iterator[FaasContext]:
    """A context of its own whose beats (client and pool heartbeats) fall outside the counted window."""
    ctx = FaasContext(**{**TEST_SETTINGS, "heartbeat_interval": 5.0})
    yield ctx
    ctx.shutdown()


def _noop() -> None:
    pass


def _writes(ctx: FaasContext) -> int:
    return int(ctx.session.state.statistics().round_trips)


def _settled(ctx: FaasContext) -> int:
    """This process' request count once its threads stopped writing (the handler re-armed its pop)."""
    last, since = _writes(ctx), time.monotonic()
    deadline = since + 5
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = _writes(ctx)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 0.1:
            break
    return last


def _count(ctx: FaasContext, op: Callable[[], Any], reps: int = 5) -> list[int]:
    for _ in range(2):  # warm: scripts loaded, connections made
        op()
    counts = []
    before = _settled(ctx)
    for _ in range(reps):
        op()
        after = _settled(ctx)
        counts.append(after - before)
        before = after
    return counts


@pytest.mark.timeout(120)
def test_a_pool_task_costs_the_client_two_round_trips(quiet_ctx: FaasContext) -> None:
    with quiet_ctx.Pool(1) as pool:
        counts = _count(quiet_ctx, lambda: pool.apply(abs, (-1,)))
    assert statistics.median(counts) == 2, f"round trips per pool.apply: {counts}"


@pytest.mark.timeout(120)
def test_a_process_start_and_join_cost_the_client_two_round_trips(quiet_ctx: FaasContext) -> None:
    def start_join() -> None:
        proc = quiet_ctx.Process(target=_noop)
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0

    counts = _count(quiet_ctx, start_join)
    assert statistics.median(counts) == 2, f"round trips per Process start+join: {counts}"


def _shout() -> None:
    print("from the process")


@pytest.mark.timeout(120)
def test_join_still_waits_for_the_output_of_a_process_that_printed(
    quiet_ctx: FaasContext, capfd: pytest.CaptureFixture[str]
) -> None:
    proc = quiet_ctx.Process(target=_shout)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert "from the process" in capfd.readouterr().out  # replayed before join returned


@pytest.mark.timeout(60)
def test_pool_results_without_blmpop_for_an_acl_user_not_allowed_it() -> None:
    """An ACL user made from an older ACL line (no +blmpop): the handler polls, then blocks."""
    import redis

    from faasmp.backends.server import acl_rules
    from faasmp.backends.state import open_state

    server = ExternalServer()
    try:
        admin = redis.Redis.from_url(server.url)
        rules = [r for r in acl_rules("pw-old-line") if r != "+blmpop"]
        admin.execute_command("ACL", "SETUSER", "old", *rules)
        state = open_state(f"redis://old:pw-old-line@127.0.0.1:{server.port}/0")
        try:
            results = PoolResultsQueue(state, "fmp:{t}:pool:p:res")
            admin.rpush("fmp:{t}:pool:p:res", b"r1", b"r2")
            assert results.take(1.0) == [b"r1", b"r2"]
            assert results.take(0.05) == []  # blocks, times out, takes nothing
            admin.rpush("fmp:{t}:pool:p:res", b"r3")
            assert results.take(1.0) == [b"r3"]
        finally:
            state.close()
    finally:
        server.stop()
