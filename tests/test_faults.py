"""Faults a real deployment meets: a worker invocation killed, one that never starts."""

from __future__ import annotations

import os
import signal
import time

import pytest

import faasmp
from faasmp.context import FaasContext
from faasmp.pool import WorkerLostError
from tests import helpers
from tests.conftest import TEST_SETTINGS


def test_killed_invocation_fails_its_work_and_the_pool_recovers():
    """SIGKILL the whole host invocation (injected fault): no hang, new workers start."""
    ctx = FaasContext(**TEST_SETTINGS)
    try:
        ctx.start_warm_pool(2)
        session = ctx.session
        k = session.keys
        pool = ctx.Pool(2)
        proc = ctx.Process(target=helpers.sleep_forever)
        proc.start()
        assert proc.pid
        result = pool.apply_async(helpers.sleep_forever)
        time.sleep(0.5)
        for host in session.state.smembers(k.hosts):
            pid = int(session.state.hget(k.k("host", host.decode()), "pid"))
            os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(WorkerLostError):
            result.get(30)
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL
        assert time.monotonic() - t0 < 30
        pool.terminate()
        with ctx.Pool(2) as fresh:
            assert fresh.map(helpers.square, range(4)) == [0, 1, 4, 9]
    finally:
        ctx.shutdown()


def test_invocation_that_cannot_start_is_reported_not_hung():
    """A broken runtime (injected: an interpreter path that does not exist)."""
    ctx = FaasContext(lithops_config={"localhost": {"runtime": "/nonexistent/python3"}}, **TEST_SETTINGS)
    try:
        t0 = time.monotonic()
        with pytest.raises(faasmp.WorkerStartError, match="nonexistent/python3"):
            with ctx.Pool(1) as p:
                p.apply(helpers.square, (2,))
        assert time.monotonic() - t0 < 60
    finally:
        ctx.shutdown()
