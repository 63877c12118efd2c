"""faasmp with a Redis user allowed only what faasmp needs (docs/cloud.md, "Redis ACL user").

A managed Redis in the cloud should give faasmp a user of its own, not the
default superuser: these tests run faasmp over TCP with exactly the ACL line
the docs print, and check that a user missing a command or a key pattern
fails with an error naming what Redis refused and the ACL to use.
"""

from __future__ import annotations

import pathlib
import secrets
from collections.abc import Iterator

import pytest
import redis

from faasmp.backends.server import ACL_COMMANDS, acl_line, acl_rules
from faasmp.backends.state import StateError, StatePermissionError
from faasmp.context import FaasContext
from tests.conftest import TEST_SETTINGS, ExternalServer

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


def test_user_without_a_command_fails_naming_the_command_and_the_acl(external_server: ExternalServer) -> None:
    password = secrets.token_hex(16)
    missing = "evalsha"
    assert missing in ACL_COMMANDS
    rules = [r for r in acl_rules(password) if r != "+" + missing]
    url = _user_url(external_server, "faasmp-no-evalsha", rules, password)
    ctx = FaasContext(redis_url=url, **TEST_SETTINGS)
    try:
        with pytest.raises(StateError) as info:
            q = ctx.Queue()
            q.put(1)
            q.get(timeout=10)
    finally:
        ctx.shutdown()
    message = str(info.value)
    assert isinstance(info.value, StatePermissionError), message
    assert "'evalsha'" in message.lower() and "ACL" in message, message


def test_user_without_the_key_pattern_fails_naming_the_acl(external_server: ExternalServer) -> None:
    password = secrets.token_hex(16)
    rules = [("~other:*" if r.startswith("~") else r) for r in acl_rules(password)]
    url = _user_url(external_server, "faasmp-other-keys", rules, password)
    ctx = FaasContext(redis_url=url, **TEST_SETTINGS)
    try:
        with pytest.raises(StatePermissionError) as info:
            q = ctx.Queue()
            q.put(1)
            q.get(timeout=10)
    finally:
        ctx.shutdown()
    message = str(info.value)
    assert "fmp:*" in message and "ACL" in message, message


def test_doctor_names_the_command_the_redis_user_lacks(external_server: ExternalServer) -> None:
    from tests.test_doctor import by_name, doctor

    password = secrets.token_hex(16)
    rules = [r for r in acl_rules(password) if r != "+blpop"]
    url = _user_url(external_server, "faasmp-no-blpop", rules, password)
    code, d = doctor(FAASMP_REDIS_URL=url)
    report = d.report()
    assert code == 1, report
    assert by_name(d)["redis (commands)"] is False, report
    assert "'blpop'" in report and "ACL SETUSER <user>" in report, report
