"""No operation needs more Redis round trips or commands than recorded in benchmarks/op_counts.json.

Counts, unlike timings, do not depend on the machine's load: a change that
adds a round trip to a Pipe send or a command to a Lock acquire fails here.
After making an operation cheaper, record the new counts with
``python benchmarks/bench_counts.py --record`` (and update the table in
docs/performance.md).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from faasmp.context import FaasContext
from tests.conftest import BACKEND_COMBOS, TEST_SETTINGS, ExternalServer

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _bench_counts() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_counts", BENCHMARKS / "bench_counts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_counts"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=BACKEND_COMBOS)
def private_ctx(request: pytest.FixtureRequest) -> Iterator[FaasContext]:
    """A context with a server of its own.

    Commands are counted server-wide (``INFO commandstats``: what a worker runs
    for the operation counts too), so the warm hosts that the session's shared
    ``ctx`` has gathered from earlier tests would add their heartbeats to the
    longer operations (a Process start+join read 31 commands instead of 29 in
    the full suite).  A private server sees only this test's work.
    """
    server = ExternalServer() if request.param == "external" else None
    # Its own hosts' heartbeats would still land in a longer operation's
    # window now and then (a Process start+join once read more commands on a
    # loaded machine): beat rarely, the counts are of the operations.
    # The shared-memory rows count the DSM's round trips: force it (the
    # localhost default puts segments in host shared memory, which asks Redis nothing).
    settings = {**TEST_SETTINGS, "heartbeat_interval": 5.0, "shared_memory": "dsm"}
    url = {} if server is None else {"redis_url": server.url}
    context = FaasContext(**url, **settings)
    try:
        yield context
    finally:
        context.shutdown()
        if server is not None:
            server.stop()


@pytest.mark.timeout(240)
def test_no_operation_needs_more_round_trips_or_commands_than_recorded(private_ctx: FaasContext) -> None:
    ctx = private_ctx
    bench = _bench_counts()
    recorded = bench.load_record()
    assert set(recorded) == set(bench.FLOORS), (
        "op_counts.json and bench_counts.FLOORS list different operations"
    )
    measured = bench.measure(ctx)
    worse = [
        f"{op}: {got.round_trips} round trips (recorded {recorded[op]['round_trips']}), "
        f"{got.waits} waits (recorded {recorded[op]['waits']}), "
        f"{got.commands} commands (recorded {recorded[op]['commands']})"
        for op, got in measured.items()
        if got.round_trips > recorded[op]["round_trips"]
        or got.waits > recorded[op]["waits"]
        or got.commands > recorded[op]["commands"]
    ]
    assert not worse, "operations now cost more than recorded:\n" + "\n".join(worse)


def test_the_recorded_counts_are_never_below_the_floor() -> None:
    """A recorded count under its floor means the floor (or the counting) is wrong."""
    bench = _bench_counts()
    for op, row in bench.load_record().items():
        assert row["floor"] == bench.FLOORS[op][0], op
        assert row["round_trips"] >= row["floor"], f"{op}: {row['round_trips']} < floor {row['floor']}"
        assert row["waits"] <= row["round_trips"], f"{op}: more waits than round trips"
