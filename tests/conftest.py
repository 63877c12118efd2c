"""Shared fixtures: every API test runs against every backend combination we ship.

``ctx`` is parametrized over the registry of state-backend setups below
(the embedded server over a unix socket, and an "external" server reached by
``redis://`` URL with a password over TCP loopback), each with real Lithops
localhost invocations.  With ``-m isolated`` a third, "isolated", runs the same
tests with workers in isolation mode (TLS, faasmp's ACL user, bwrap sandboxes).
No fakes: a fault a test injects says so in its name.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator

# Lithops keeps its working files in a temp dir shared by all runs of a user;
# give this test run its own before anything imports lithops (docs/architecture.md, "Pitfalls").
_RUN_TMP = tempfile.mkdtemp(prefix="faasmp-tests-")
os.environ["TMPDIR"] = _RUN_TMP
tempfile.tempdir = None

import cloudpickle  # noqa: E402
import pytest  # noqa: E402

import faasmp  # noqa: E402
from faasmp.backends.server import find_server_binary  # noqa: E402
from faasmp.context import FaasContext  # noqa: E402

TEST_SETTINGS = {"idle_timeout": 30.0, "heartbeat_interval": 0.5, "start_timeout": 60.0}


def pytest_collection_finish(session: pytest.Session) -> None:
    # Workers do not have the tests directory on sys.path, exactly like a
    # notebook's functions: ship test modules by value.
    import sys  # noqa: PLC0415

    import tests.helpers  # noqa: F401, PLC0415

    modules = {item.module for item in session.items if getattr(item, "module", None)}
    modules |= {m for name, m in list(sys.modules.items()) if name.startswith("tests.helpers")}
    for module in modules:
        cloudpickle.register_pickle_by_value(module)


class ExternalServer:
    """A separately started Redis-compatible server on TCP loopback with a password."""

    def __init__(self) -> None:
        import socket  # noqa: PLC0415

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.password = secrets.token_hex(16)
        self.dir = tempfile.mkdtemp(prefix="faasmp-ext-redis-")
        self.proc = subprocess.Popen(
            [
                find_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                self.password,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        import redis  # noqa: PLC0415 - tests may talk to Redis directly

        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def acl_user_url(self, user: str = "faasmp") -> str:
        """URL of a new user of this server allowed only faasmp's ACL (acl_rules)."""
        import redis  # noqa: PLC0415

        from faasmp.backends.server import acl_rules  # noqa: PLC0415

        password = secrets.token_hex(16)
        redis.Redis.from_url(self.url).execute_command("ACL", "SETUSER", user, *acl_rules(password))
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="session")
def external_server() -> Iterator[ExternalServer]:
    server = ExternalServer()
    yield server
    server.stop()


BACKEND_COMBOS = ["embedded", "external"]
#: With the ``isolated`` marker (``pytest -m isolated tests/test_pool.py ...``)
#: the same API tests run with workers in isolation mode (docs/cloud.md, section 6).
CTX_PARAMS = [*BACKEND_COMBOS, pytest.param("isolated", marks=pytest.mark.isolated)]


class IsolatedRedis:
    """Redis as isolated workers reach it: TLS (stunnel) in front of an external server, faasmp's ACL user.

    Lithops' job data goes through its Redis storage backend on the same
    server, as the admin user (faasmp's own user may touch only ``fmp:*``).
    """

    def __init__(self, server: ExternalServer) -> None:
        from tests.test_cloud_acl import TlsFront  # noqa: PLC0415

        self.front = TlsFront(server)
        acl_url = server.acl_user_url("faasmp-isolated")
        user = acl_url.split("://", 1)[1].split("@", 1)[0]
        self.url = f"rediss://{user}@127.0.0.1:{self.front.port}/0?ssl_ca_certs={self.front.ca}"
        self.storage = {
            "host": "127.0.0.1",
            "port": self.front.port,
            "password": server.password,
            "ssl": True,
            "ssl_ca_certs": self.front.ca,
        }

    def settings(self) -> dict[str, object]:
        """FaasContext keyword arguments of an isolated run."""
        return {"redis_url": self.url, "isolate": True, "lithops_config": {"redis": self.storage}}

    def stop(self) -> None:
        self.front.stop()


def skip_if_isolated(ctx: FaasContext, why: str) -> None:
    """Skip a test of the ``isolated`` combination that relies on what only the client's machine has."""
    if ctx.config.isolate:
        pytest.skip(f"isolation mode: {why}")


@pytest.fixture(scope="session")
def isolated_redis(external_server: ExternalServer) -> Iterator[IsolatedRedis]:
    import shutil  # noqa: PLC0415

    missing = [tool for tool in ("bwrap", "openssl") if not shutil.which(tool)]
    if not (shutil.which("stunnel4") or shutil.which("stunnel")):
        missing.append("stunnel4")
    if missing:
        pytest.skip(f"isolation mode needs {', '.join(missing)} (.ci/run installs the Debian packages)")
    redis_front = IsolatedRedis(external_server)
    yield redis_front
    redis_front.stop()


def _new_context(request: pytest.FixtureRequest, combo: str, **extra: object) -> FaasContext:
    """A context of backend combination *combo* (``embedded``, ``external`` or ``isolated``)."""
    if combo == "embedded":
        return FaasContext(**TEST_SETTINGS, **extra)
    if combo == "isolated":
        return FaasContext(**request.getfixturevalue("isolated_redis").settings(), **TEST_SETTINGS, **extra)
    server = request.getfixturevalue("external_server")
    url = server.url
    if os.environ.get("FAASMP_TEST_ACL"):
        # Opt-in: the "external" combination runs as a Redis user with
        # exactly faasmp's ACL (docs/cloud.md), proving the list complete.
        url = server.acl_user_url()
    return FaasContext(redis_url=url, **TEST_SETTINGS, **extra)


@pytest.fixture(scope="session", params=CTX_PARAMS)
def ctx(request: pytest.FixtureRequest) -> Iterator[FaasContext]:
    """A faasmp context per backend combination, warm across the session."""
    context = _new_context(request, request.param)
    yield context
    context.shutdown()


#: Shared-memory tests of behaviour run with segments in host shared memory
#: (``embedded``/``external``: the localhost default) and in the DSM
#: (``embedded-dsm``); isolated runs use the DSM anyway (auto).
SHM_PARAMS = ["embedded", "external", "embedded-dsm", pytest.param("isolated", marks=pytest.mark.isolated)]
#: Tests of the DSM's own mechanism (pushes, pulls, twins, version logs) force it.
DSM_PARAMS = ["embedded-dsm", "external-dsm", pytest.param("isolated", marks=pytest.mark.isolated)]


@pytest.fixture(scope="session")
def _mode_contexts() -> Iterator[dict[str, FaasContext]]:
    """Contexts of ``shm_ctx``/``dsm_ctx`` by name, made once, shut down at the end."""
    made: dict[str, FaasContext] = {}
    yield made
    for context in made.values():
        context.shutdown()


def _mode_context(request: pytest.FixtureRequest) -> FaasContext:
    made = request.getfixturevalue("_mode_contexts")
    name = request.param
    if name not in made:
        combo, _, mode = name.partition("-")
        made[name] = _new_context(request, combo, **({"shared_memory": mode} if mode else {}))
    context: FaasContext = made[name]
    return context


@pytest.fixture(scope="session", params=SHM_PARAMS)
def shm_ctx(request: pytest.FixtureRequest) -> FaasContext:
    """A context per backend combination and shared-memory mode (see SHM_PARAMS)."""
    return _mode_context(request)


@pytest.fixture(scope="session", params=DSM_PARAMS)
def dsm_ctx(request: pytest.FixtureRequest) -> FaasContext:
    """A context per backend combination with the DSM forced (see DSM_PARAMS)."""
    return _mode_context(request)


@pytest.fixture(scope="session")
def default_ctx() -> Iterator[FaasContext]:
    """The default context (top-level faasmp API), shut down at the end."""
    from faasmp.context import default_context  # noqa: PLC0415

    default_context().configure(**TEST_SETTINGS)
    yield default_context()
    faasmp.shutdown()
