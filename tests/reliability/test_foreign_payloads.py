"""A payload that would run code when unpickled, written straight into a run's keyspace
(injected: an attacker with Redis access but without the run's authkey), is refused by
every reader and never unpickled; the readers keep working."""

from __future__ import annotations

import os
import pickle
import time

import pytest

from faasmp.runtime.call import AuthenticationError
from tests import helpers


class _Exploit:
    """Unpickling this runs a shell command (the classic pickle attack)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil(marker) -> list[bytes]:
    body = pickle.dumps(_Exploit(str(marker)))
    assert b"system" in body
    # A zero MAC, a MAC made with another key, and no MAC at all: all refused.
    return [b"\x00" * 32 + body, os.urandom(32) + body, body]


def test_exploit_pickle_really_runs_code_when_unpickled(tmp_path):
    """Guards the guard: the payload used below is a working exploit."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_Exploit(str(marker))))
    assert marker.exists()


@pytest.mark.parametrize("ctx", ["embedded"], indirect=True)  # key names do not depend on the server
def test_foreign_payloads_are_refused_by_every_reader(ctx, tmp_path):
    marker = tmp_path / "pwned"
    session = ctx.session
    state = session.state
    # 1. Queue.get
    q = ctx.Queue()
    for blob in _evil(marker):
        state.rpush(q.key("items"), blob)
        with pytest.raises(AuthenticationError):
            q.get(timeout=10)
        assert not marker.exists(), "Queue.get unpickled a foreign payload"
    q.put("clean")
    assert q.get(timeout=10) == "clean"
    # 2. a Pipe end
    a, b = ctx.Pipe()
    a.send("first")
    assert b.recv() == "first"
    with ctx.Pool(2) as pool:
        # 3. the warm pool's work queue (idle workers read it)
        for blob in _evil(marker):
            state.rpush(session.keys.work, blob)
        # 4. this pool's task list (its leased workers read it)
        for blob in _evil(marker):
            state.rpush(pool._tasks_key, blob)
        # 5. the pool's result list (the client's result handler reads it)
        for blob in _evil(marker):
            state.rpush(pool._results_key, blob)
        time.sleep(1.0)
        assert pool.map(helpers.square, range(8)) == [i * i for i in range(8)]
    with ctx.Pool(1) as pool:
        assert pool.apply(helpers.square, (4,)) == 16
    assert not marker.exists(), "a foreign payload was unpickled"
