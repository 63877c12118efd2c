"""Payloads are signed; tampered or foreign data is refused, never unpickled."""

from __future__ import annotations

import os
import pickle

import pytest

from faasmp.runtime.call import AuthenticationError, ExceptionInfo, RemoteTraceback, dumps, loads

KEY = b"k" * 32


class Exploit:
    """Unpickling this runs a shell command (the classic pickle attack)."""

    def __init__(self, path: object) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_roundtrip_and_tamper_refused():
    blob = dumps({"a": 1}, KEY)
    assert loads(blob, KEY) == {"a": 1}
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(AuthenticationError):
        loads(bytes(tampered), KEY)
    with pytest.raises(AuthenticationError):
        loads(blob, b"x" * 32)  # another run's key
    with pytest.raises(AuthenticationError):
        loads(b"short", KEY)


def test_malicious_pickle_is_not_unpickled(tmp_path):
    # Control: the body really runs a command when unpickled.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Exploit(control)))
    assert control.exists()
    marker = tmp_path / "pwned"
    body = pickle.dumps(Exploit(marker))
    for evil in (b"\x00" * 32 + body, os.urandom(32) + body, body):  # zero, foreign, no MAC
        with pytest.raises(AuthenticationError):
            loads(evil, KEY)
    assert not marker.exists(), "loads() unpickled a payload it refused"


def test_malicious_pickle_in_the_work_queue_is_refused(ctx, tmp_path):
    """A foreign payload written into a run's keyspace is refused by the workers."""
    # The payload really runs a command when unpickled (control), so refusing
    # it is what keeps the marker from appearing.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Exploit(control)))
    assert control.exists()
    marker = tmp_path / "pwned"
    session = ctx.session
    session.prestart(1)
    session.wait_ready(1, 60)
    payload = b"\x00" * 32 + pickle.dumps(Exploit(marker))
    session.state.rpush(session.keys.work, payload)
    # The pool still works afterwards, and the command never ran.
    from tests import helpers

    with ctx.Pool(1) as p:
        assert p.apply(helpers.square, (3,)) == 9
    assert not marker.exists()


def test_exception_info_rebuilds_type_and_cause():
    try:
        raise KeyError("missing")
    except KeyError as exc:
        info = ExceptionInfo.capture(exc)
    rebuilt = info.rebuild()
    assert isinstance(rebuilt, KeyError)
    assert isinstance(rebuilt.__cause__, RemoteTraceback)
    assert 'raise KeyError("missing")' in str(rebuilt.__cause__)
