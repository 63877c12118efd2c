"""``python -m faasmp doctor`` against the localhost backend and broken configurations.

The broken configurations are real: a closed port, a misspelled backend, a
unix socket with a cloud backend, and a Redis the client reaches but workers
do not (a socket proxy that admits only the client process — a fault injected
for the test, named so).  A worker version mismatch is injected with
``FAASMP_FAULT_WORKER_VERSIONS`` (the only way to get two versions of
cloudpickle on one machine).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from faasmp import config as config_mod
from faasmp.doctor import FAULT_WORKER_VERSIONS, Doctor, _run


def doctor(**env: str) -> tuple[int, Doctor]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FAASMP_")}
    environ.update(env)
    d = Doctor(timeout=60.0, refresh=False, environ=environ)
    return d.run(), d


def by_name(d: Doctor) -> dict[str, bool | None]:
    return {c.name: c.ok for c in d.checks}


def test_localhost_with_embedded_redis_passes_every_check():
    code, d = doctor()
    assert code == 0, d.report()
    assert set(by_name(d).values()) == {True}
    report = d.report()
    assert "✓ redis (worker)" in report and "worker wrote, client read back" in report
    assert "all checks passed" in report


def test_external_redis_url_passes_every_check(external_server):
    code, d = doctor(FAASMP_REDIS_URL=external_server.url)
    assert code == 0, d.report()
    assert "redis://" in d.checks[1].detail and "ping p50" in d.checks[1].detail


def test_cli_prints_the_report_and_exits_1_on_a_bad_config():
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAASMP_")}
    env["FAASMP_BACKEND"] = "aws_lamda"
    out = subprocess.run(
        [sys.executable, "-m", "faasmp", "doctor", "--timeout", "30"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    assert "✗ config" in out.stdout and "unknown faasmp backend 'aws_lamda'" in out.stdout
    assert "aws_lambda" in out.stdout  # the known backends are listed
    assert "- compute" in out.stdout and "skipped" in out.stdout


def test_unreachable_redis_url_fails_the_client_check_with_a_remedy():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, d = doctor(FAASMP_REDIS_URL=f"redis://:pw@127.0.0.1:{port}/0")
    assert code == 1
    checks = by_name(d)
    assert checks["redis (client)"] is False and checks["compute"] is True
    assert checks["redis (worker)"] is None  # skipped, not blamed
    assert "FAASMP_REDIS_URL" in d.report() and "fix:" in d.report()


def test_cloud_backend_with_a_unix_socket_redis_is_refused():
    code, d = doctor(FAASMP_BACKEND="aws_lambda", FAASMP_REDIS_URL="unix:///run/redis.sock")
    assert code == 1 and by_name(d)["config"] is False
    assert "cannot reach it" in d.checks[0].detail


def test_cloud_backend_with_the_embedded_redis_is_refused():
    code, d = doctor(FAASMP_BACKEND="gcp_cloudrun")
    assert code == 1 and "embedded Redis" in d.checks[0].detail
    assert "FAASMP_REDIS_URL" in d.checks[0].remedy


class ClientOnlyFirewall:
    """Fault injected for the test: a unix-socket proxy to Redis that admits only
    connections from this process (SO_PEERCRED), like a firewall open to the
    client's machine but not to the functions' network."""

    def __init__(self, path: str, target: tuple[str, int]) -> None:
        self.path, self.target = path, target
        self.refused = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            pid, _uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if pid != os.getpid():
                self.refused += 1
                conn.close()
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def firewall(external_server, tmp_path) -> Iterator[tuple[ClientOnlyFirewall, str]]:
    import tempfile

    sock_dir = tempfile.mkdtemp(prefix="fw-", dir="/tmp")  # unix socket paths are short
    parts = urlsplit(external_server.url)
    fw = ClientOnlyFirewall(os.path.join(sock_dir, "r.sock"), (parts.hostname or "", parts.port or 6379))
    yield fw, f"unix://:{parts.password}@{fw.path}?db=0"
    fw.close()


def test_redis_the_workers_cannot_reach_fails_the_worker_check(firewall):
    fw, url = firewall
    code, d = doctor(FAASMP_REDIS_URL=url)
    checks = by_name(d)
    assert checks["redis (client)"] is True and checks["compute"] is True, d.report()
    assert checks["redis (worker)"] is False
    assert code == 1 and fw.refused >= 1
    report = d.report()
    assert "the worker could not use Redis" in report and "firewall" in report


def test_version_mismatch_fault_fails_the_versions_check():
    code, d = doctor(**{FAULT_WORKER_VERSIONS: "cloudpickle=0.0.1"})
    assert code == 1
    versions = next(c for c in d.checks if c.name == "versions")
    assert versions.ok is False
    assert "cloudpickle" in versions.detail and "0.0.1 on the worker" in versions.detail
    assert "fault injected" in versions.detail and "lithops runtime build" in versions.remedy


def test_each_check_is_bounded_by_its_timeout():
    t0 = time.monotonic()
    check = _run("slow", 0.2, lambda: time.sleep(5) or "never")
    assert time.monotonic() - t0 < 2
    assert check.ok is False and "no answer within 0.2 s" in check.detail


def test_known_backends_match_lithops():
    import lithops.constants as lc

    assert set(lc.SERVERLESS_BACKENDS) == config_mod.SERVERLESS_BACKENDS
    assert set(lc.STANDALONE_BACKENDS) == config_mod.STANDALONE_BACKENDS


def test_executors_made_by_several_threads_at_once_all_start():
    """A session's background executor and `faasmp doctor`'s own are made at the same time.

    Lithops' localhost backend writes its runner script through a temp file
    named by the pid; without faasmp's lock, 4 threads x 5 rounds failed 4 of
    20 times here with "No such file or directory: ...runner-v2.py.<pid>.tmp".
    """
    from faasmp.backends import compute  # noqa: PLC0415
    from faasmp.config import load  # noqa: PLC0415

    cfg = load()
    errors: list[BaseException] = []

    def make() -> None:
        try:
            compute.LithopsCompute(cfg).shutdown()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    for _ in range(5):
        threads = [threading.Thread(target=make) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
