"""The embedded server: private, password-protected, no persistence, dies with us."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import redis

from faasmp.backends.server import EmbeddedServer


@pytest.fixture
def server():
    s = EmbeddedServer.start()
    yield s
    s.stop()


def test_unix_socket_only_password_required_no_persistence(server):
    r = redis.Redis(unix_socket_path=server.socket_path, password=server.password)
    assert r.ping()
    assert r.config_get("port")["port"] == "0"  # no TCP listener
    assert r.config_get("save")["save"] == ""
    assert r.config_get("appendonly")["appendonly"] == "no"
    assert oct(os.stat(os.path.dirname(server.socket_path)).st_mode & 0o777) == "0o700"
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(unix_socket_path=server.socket_path).ping()
    assert server.password not in repr(server)


def _pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie still answers kill(0): check its state
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split()[2] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


CHILD = textwrap.dedent(
    """
    import sys, time
    from faasmp.backends.server import EmbeddedServer
    s = EmbeddedServer.start()
    print(s.process.pid, flush=True)
    if sys.argv[1] == "hang":
        time.sleep(60)
    """
)


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_server_does_not_outlive_its_parent(how):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "hang" if how == "sigkill" else "exit"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    server_pid = int(child.stdout.readline())
    if how == "sigkill":
        child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert _pid_gone(server_pid, 10), f"embedded server {server_pid} outlived its parent ({how})"


def test_missing_binary_is_a_clear_error():
    from faasmp.backends.server import ServerError

    with pytest.raises(ServerError, match="not an executable"):
        EmbeddedServer.start("/nonexistent/valkey-server")


def test_forked_child_exit_does_not_stop_the_parents_run(default_ctx):
    """A stdlib fork Pool in the same program must not shut faasmp down."""
    import multiprocessing

    import faasmp
    from tests import helpers

    with faasmp.Pool(1) as p:
        assert p.apply(helpers.square, (2,)) == 4
    with multiprocessing.get_context("fork").Pool(2) as std:
        assert std.map(abs, [-1, -2]) == [1, 2]
    with faasmp.Pool(1) as p:
        assert p.apply(helpers.square, (3,)) == 9


INTERRUPTED = textwrap.dedent(
    """
    import os, signal, time, faasmp
    faasmp.configure(idle_timeout=30.0)
    faasmp.start_warm_pool(1)
    try:
        os.killpg(os.getpgrp(), signal.SIGINT)  # what Ctrl-C / a kernel interrupt does
        time.sleep(1)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    with faasmp.Pool(1) as p:
        print("after interrupt:", p.apply(abs, (-3,)), flush=True)
    """
)


def test_ctrl_c_to_the_process_group_does_not_stop_the_embedded_server(tmp_path):
    res = subprocess.run(
        [sys.executable, "-c", INTERRUPTED],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert res.stdout.splitlines() == ["interrupted", "after interrupt: 3"], res.stderr


def test_the_direct_packer_writes_what_redis_py_writes() -> None:
    """The direct path's RESP encoder (fast path, packed script prefixes) matches redis-py's byte for byte."""
    import redis  # noqa: PLC0415

    from faasmp.backends.resp import _LeanPacker  # noqa: PLC0415

    reference = redis.connection.PythonRespSerializer(
        1 << 16, redis.connection.Encoder("utf-8", "strict", False).encode
    )
    packer = _LeanPacker()
    args = ("EVALSHA", "a" * 40, 2, "k:é", b"k2", "", 3600000, -1, 1.5, bytearray(b"xy"), b"z" * 70_000)
    for n in range(1, len(args) + 1):
        want = b"".join(bytes(c) for c in reference.pack(*args[:n]))
        assert b"".join(bytes(c) for c in packer.pack(*args[:n])) == want
        if n >= 4:  # EVALSHA, sha, key count, key packed once, the rest per call
            prefix = _LeanPacker.prefix(*args[:4])
            assert b"".join(bytes(c) for c in packer.pack_prefixed(prefix, 4, args[4:n])) == want
    with pytest.raises(redis.exceptions.DataError):
        packer.pack("SET", "k", True)
