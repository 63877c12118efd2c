"""A payload that would run code when unpickled, written straight into a run's keyspace
(injected: an attacker with Redis access but without the run's authkey), is refused by
every reader and never unpickled; the readers keep working."""

from __future__ import annotations

import logging
import os
import pickle
import time

import pytest

from faasmp.context import FaasContext
from faasmp.runtime.call import AuthenticationError
from tests import helpers
from tests.conftest import TEST_SETTINGS


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


#: Put on the workers' PYTHONPATH as ``sitecustomize``: their faasmp.runtime.worker
#: log also goes to a file the test reads (observation only; nothing is replaced).
WORKER_LOG_TO_FILE = """
import logging, os
path = os.environ.get("FAASMP_TEST_WORKER_LOG")
if path:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(process)d %(levelname)s %(message)s"))
    logging.getLogger("faasmp.runtime.worker").addHandler(handler)
"""


def _wait_empty(state, key, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := state.llen(key)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == 0, f"{what}: {left} foreign payload(s) never read"


def _refusals(log, what: str) -> int:
    return log.read_text().count(what) if log.exists() else 0


def test_foreign_payloads_are_refused_by_every_reader(tmp_path, monkeypatch, caplog):
    marker = tmp_path / "pwned"
    hook, log = tmp_path / "hook", tmp_path / "worker.log"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(WORKER_LOG_TO_FILE)
    monkeypatch.setenv("FAASMP_TEST_WORKER_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    ctx = FaasContext(**TEST_SETTINGS)  # its workers start with the hook
    try:
        session = ctx.session
        state = session.state
        # 1. Queue.get
        q = ctx.Queue()
        for blob in _evil(marker):
            state.rpush(q.key("items"), blob)
            with pytest.raises(AuthenticationError):
                q.get(timeout=10)
            assert state.llen(q.key("items")) == 0
            assert not marker.exists(), "Queue.get unpickled a foreign payload"
        q.put("clean")
        assert q.get(timeout=10) == "clean"
        # 2. a Pipe end: the payload goes into the list the receiving end reads
        a, b = ctx.Pipe()
        a.send("first")
        assert b.recv() == "first"
        for blob in _evil(marker):
            state.rpush(b._rkey, blob)
            with pytest.raises(AuthenticationError):
                b.recv()
            assert state.llen(b._rkey) == 0
            assert not marker.exists(), "Connection.recv unpickled a foreign payload"
        a.send("after")
        assert b.recv() == "after"
        # 3. the warm pool's work queue (idle workers read it)
        session.prestart(2)
        session.wait_ready(2, 60)
        for blob in _evil(marker):
            state.rpush(session.keys.work, blob)
        _wait_empty(state, session.keys.work, "the work queue")
        with ctx.Pool(2) as pool:
            assert pool.map(helpers.square, range(4)) == [0, 1, 4, 9]  # the workers are serving it
            # 4. this pool's task list (its leased workers read it)
            for blob in _evil(marker):
                state.rpush(pool._tasks_key, blob)
            _wait_empty(state, pool._tasks_key, "the pool's task list")
            # 5. the pool's result list (the client's result handler reads it)
            with caplog.at_level(logging.WARNING, logger="faasmp.pool"):
                for blob in _evil(marker):
                    state.rpush(pool._results_key, blob)
                _wait_empty(state, pool._results_key, "the pool's result list")
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and _dropped(caplog) < 3:
                    time.sleep(0.05)
            assert _dropped(caplog) == 3, caplog.text
            assert pool.map(helpers.square, range(8)) == [i * i for i in range(8)]
        with ctx.Pool(1) as pool:
            assert pool.apply(helpers.square, (4,)) == 16
        # Every refusal by a worker was logged there (3 payloads each into 2 lists).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            _refusals(log, "refused an unauthenticated work item") < 3
            or _refusals(log, "refused an unauthenticated pool task") < 3
        ):
            time.sleep(0.05)
        assert _refusals(log, "refused an unauthenticated work item") == 3, _log_text(log)
        assert _refusals(log, "refused an unauthenticated pool task") == 3, _log_text(log)
        assert not marker.exists(), "a foreign payload was unpickled"
    finally:
        ctx.shutdown()


def _dropped(caplog) -> int:
    return sum("dropped an unauthenticated result message" in r.getMessage() for r in caplog.records)


def _log_text(log) -> str:
    return log.read_text() if log.exists() else "(no worker log)"
