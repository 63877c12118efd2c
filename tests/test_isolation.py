"""Isolation mode (docs/cloud.md, section 6): workers that share nothing with the client but Redis.

A few seconds of these run by default; the API test modules run in isolation
mode with ``pytest -m isolated tests/test_pool.py ...`` (the ``isolated``
parameter of the ``ctx`` fixture).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path

import pytest
import redis

from faasmp import config as config_mod
from faasmp.backends.isolation import (
    FAULT_BROKEN_SANDBOX,
    SANDBOX_ENV,
    IsolationError,
    set_inside,
    storage_config,
)
from faasmp.backends.storage import LithopsStore, StorageBackendError, StoreSpec, spec_for
from faasmp.context import FaasContext
from tests.conftest import TEST_SETTINGS, ExternalServer, IsolatedRedis
from tests.test_doctor import by_name, doctor

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def iso_ctx(isolated_redis: IsolatedRedis) -> Iterator[FaasContext]:
    context = FaasContext(**isolated_redis.settings(), **TEST_SETTINGS)
    yield context
    context.shutdown()


def _what_a_worker_sees(client_pid: int, client_file: str, project: str, shm_name: str, port: int) -> dict:
    """Runs on a worker: what of the client's machine it can reach."""
    import socket

    import faasmp as worker_faasmp

    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        other_port = "reached"
    except OSError as exc:
        other_port = type(exc).__name__
    return {
        "pid": os.getpid(),
        "client_pid_visible": os.path.exists(f"/proc/{client_pid}"),
        "client_file_visible": os.path.exists(client_file),
        "project_visible": os.path.exists(project),
        "shm_visible": os.path.exists(f"/dev/shm/{shm_name}"),
        "env": sorted(os.environ),
        "tmpdir": os.environ.get("TMPDIR"),
        "path": os.environ.get("PATH"),
        "faasmp": worker_faasmp.__file__,
        "other_port": other_port,
    }


def test_an_isolated_worker_sees_none_of_the_clients_files_processes_or_network(
    iso_ctx: FaasContext, external_server: ExternalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAASMP_TEST_CLIENT_ONLY", "1")  # set before the worker starts
    client_file = tmp_path / "client-only.txt"
    client_file.write_text("the client's")
    shm = shared_memory.SharedMemory(create=True, size=64)
    try:
        with iso_ctx.Pool(1) as pool:
            # external_server.port: a server on the client's loopback that is not the Redis of this run.
            args = (os.getpid(), str(client_file), str(PROJECT), shm.name, external_server.port)
            seen = pool.apply(_what_a_worker_sees, args)
    finally:
        shm.close()
        shm.unlink()
    assert not seen["client_file_visible"], seen
    assert not seen["project_visible"], seen
    assert not seen["shm_visible"], seen
    assert not seen["client_pid_visible"] and seen["pid"] < 1000, seen
    assert seen["other_port"] == "ConnectionRefusedError", seen
    assert seen["tmpdir"] == "/tmp" and seen["tmpdir"] != os.environ["TMPDIR"], seen
    # Nothing of the client's environment: only what isolation mode sets and
    # what Lithops' worker handler sets from the job (LITHOPS_CONFIG, ...).
    leaked = [k for k in seen["env"] if not set_inside(k)]
    assert leaked == [] and "FAASMP_TEST_CLIENT_ONLY" in os.environ, leaked
    assert seen["path"] == SANDBOX_ENV["PATH"], seen
    assert seen["faasmp"].startswith("/opt/faasmp/"), seen  # the wheel install, not the project


def _read(path: str) -> str:
    return Path(path).read_text()


def test_a_client_path_fails_in_an_isolated_worker_with_its_own_error(
    iso_ctx: FaasContext, tmp_path: Path
) -> None:
    path = tmp_path / "data.txt"
    path.write_text("only on the client")
    with iso_ctx.Pool(1) as pool, pytest.raises(FileNotFoundError, match=r"data\.txt"):
        pool.apply(_read, (str(path),), {})


def test_lithops_job_data_goes_through_redis_storage(
    iso_ctx: FaasContext, isolated_redis: IsolatedRedis, external_server: ExternalServer
) -> None:
    q = iso_ctx.Queue()
    p = iso_ctx.Process(target=q.put, args=("through redis",))
    p.start()
    assert q.get(timeout=60) == "through redis"
    p.join(60)
    assert p.exitcode == 0
    admin = redis.Redis.from_url(external_server.url)
    # Lithops' Redis storage backend keeps the job under its bucket, "storage/".
    jobs = [k for k in admin.scan_iter("storage/lithops.jobs/*", count=1000)]
    assert jobs, "no Lithops job data in Redis: isolated workers could not have read their job"


def _read_object(spec: StoreSpec, bucket: str, key: str) -> bytes:
    return LithopsStore(spec).get(bucket, key)


def test_files_of_faasmp_storage_cross_the_sandbox_through_redis_storage(iso_ctx: FaasContext) -> None:
    spec = spec_for(iso_ctx.config)
    assert spec.backend == "redis", spec
    store = LithopsStore(spec)
    bucket, key = store.default_bucket or "storage", f"faastest/{uuid.uuid4().hex}"
    store.put(bucket, key, b"written by the client")
    try:
        with iso_ctx.Pool(1) as pool:
            assert pool.apply(_read_object, (spec, bucket, key)) == b"written by the client"
    finally:
        store.delete(bucket, key)


def _write_with_faasmp_storage(path: str, text: str) -> None:
    import faasmp.storage as fs

    fs.makedirs(os.path.dirname(path), exist_ok=True)
    with fs.open(path, "w") as f:
        f.write(text)


def test_faasmp_storage_in_an_isolated_worker_uses_the_jobs_storage(iso_ctx: FaasContext) -> None:
    """A worker's own settings say localhost; its files must land where the client reads them."""
    folder = f"faastest-{uuid.uuid4().hex[:10]}"
    with iso_ctx.Pool(1) as pool:
        pool.apply(_write_with_faasmp_storage, (f"/{folder}/w.txt", "from the sandbox"))
    store = LithopsStore(spec_for(iso_ctx.config))
    bucket = store.default_bucket or "storage"
    keys = [key for key, _ in store.list_prefix(bucket, folder)]
    written = [k for k in keys if k.endswith("w.txt")]
    assert written, keys
    assert store.get(bucket, written[0]) == b"from the sandbox"
    for key in keys:
        store.delete(bucket, key)


def test_an_isolated_worker_refuses_the_clients_localhost_storage(iso_ctx: FaasContext) -> None:
    """Localhost storage lives in the client's temp dir: refused, not a file only the worker sees."""
    local = StoreSpec("localhost", {"lithops": {"backend": "localhost", "storage": "localhost"}})
    with iso_ctx.Pool(1) as pool, pytest.raises(StorageBackendError, match="cannot reach"):
        pool.apply(_read_object, (local, "storage", "any"))


def test_isolation_mode_refuses_a_redis_workers_cannot_reach() -> None:
    with pytest.raises(ValueError, match=r"isolation mode .* needs a Redis reached over TCP"):
        config_mod.load(environ={}, isolate=True)
    with pytest.raises(ValueError, match=r"isolation mode .* needs a Redis reached over TCP"):
        config_mod.load(environ={}, isolate=True, redis_url="unix:///tmp/redis.sock")
    with pytest.raises(ValueError, match="localhost backend"):
        config_mod.load(environ={}, isolate=True, backend="aws_lambda", redis_url="rediss://r.example:6379")


def test_isolation_mode_refuses_an_address_it_cannot_serve_inside() -> None:
    from faasmp.backends.isolation import Isolation

    with pytest.raises(IsolationError, match=r"loopback address only; got '10\.200\.0\.1'"):
        Isolation("redis://10.200.0.1:6379/0", storage_config("redis://10.200.0.1:6379/0"))


def test_storage_config_carries_the_url_credentials_and_tls() -> None:
    conf = storage_config("rediss://user:p%40ss@127.0.0.1:7000/2?ssl_ca_certs=/etc/ca.pem")
    assert conf == {
        "host": "127.0.0.1",
        "port": 7000,
        "username": "user",
        "password": "p@ss",
        "db": 2,
        "ssl": True,
        "ssl_ca_certs": "/etc/ca.pem",
    }


@pytest.mark.isolated  # ~15 s: its own session and executor
def test_doctor_reports_what_an_isolated_worker_could_not_reach(isolated_redis: IsolatedRedis) -> None:
    code, d = doctor(
        FAASMP_ISOLATE="1",
        FAASMP_REDIS_URL=isolated_redis.url,
        FAASMP_LITHOPS_CONFIG=json.dumps({"redis": isolated_redis.storage}),
    )
    report = d.report()
    assert code == 0, report
    assert by_name(d)["isolation"] is True, report
    detail = next(c.detail for c in d.checks if c.name == "isolation")
    assert (
        "could not reach a file in the client's temp dir" in detail and "reached Redis 127.0.0.1" in detail
    ), report


@pytest.mark.isolated  # ~10 s: its own session
def test_a_sandbox_that_cannot_start_fails_the_work_clearly_not_a_hang_fault_broken_sandbox(
    isolated_redis: IsolatedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bwrap failing (injected: a bind of a missing path) leaves no Lithops status: reported, not awaited."""
    monkeypatch.setenv(FAULT_BROKEN_SANDBOX, "1")  # the launcher inherits the client's environment
    context = FaasContext(**isolated_redis.settings(), **TEST_SETTINGS)
    try:
        with context.Pool(1) as pool, pytest.raises(Exception) as info:
            pool.apply(os.getpid, (), {})
    finally:
        context.shutdown()
    message = str(info.value)
    assert "isolated invocation (bwrap sandbox) exited with code" in message, message
    assert "no-such-file" in message, message  # bwrap's own words name what failed
