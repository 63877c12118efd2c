"""Isolation mode: each localhost invocation in a sandbox that shares nothing with the client but Redis.

On a cloud platform a worker shares nothing with the client: not its files,
temp directory, shared memory, file descriptors, process IDs or environment;
it reaches Redis over the network only.  On Lithops' localhost backend a
worker is a child process of the client and shares all of that, so a program
(or faasmp itself) that relies on any of it by accident works here and fails
in the cloud.  With ``FAASMP_ISOLATE=1`` (setting ``isolate``) every Lithops
localhost invocation runs under bubblewrap (``bwrap``) in its own user,
mount, PID, IPC, UTS and network namespaces, where:

* **files**: the root is empty but for the system (``/usr``, ``/etc``), the
  interpreter and its packages (the venv, mounted at ``/opt/venv``, with the
  development install of faasmp masked) and a non-editable copy of faasmp (a
  wheel built from the source tree once and cached, mounted at
  ``/opt/faasmp``), as a runtime image has them.  ``/tmp`` and the home
  ``/home/faasmp`` are private and empty; the project directory, the client's
  temp dir, sockets and ``/dev/shm`` are not there.
* **network**: only a loopback device.  The Redis address (and the Lithops
  storage address) is served inside by a TCP forwarder that relays bytes over
  a Unix socket to the real address; TLS stays end to end.  Nothing else is
  reachable.
* **environment**: empty but for :data:`SANDBOX_ENV` (no variable of the client).
* **job data**: Lithops' Redis storage backend carries the job (functions,
  arguments, statuses, results); the sandbox gets only the task description
  Lithops' localhost backend hands its runner (the invocation request of a
  cloud platform) and the runner script, copied into a private directory.

This file also runs as a script, with the standard library only: ``launch``
on the client's machine (the Lithops "runtime" executable calls it) and
``inside`` in the sandbox.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from ..config import Config

logger = logging.getLogger(__name__)

#: Where things appear inside the sandbox.
SANDBOX_VENV = "/opt/venv"
SANDBOX_FAASMP = "/opt/faasmp"
SANDBOX_JOB = "/run/faasmp/job"
SANDBOX_NET = "/run/faasmp/net"
SANDBOX_HOME = "/home/faasmp"

#: The whole environment of an isolated worker (nothing is inherited).
SANDBOX_ENV: Mapping[str, str] = {
    "PATH": f"{SANDBOX_VENV}/bin:/usr/bin:/bin",
    "HOME": SANDBOX_HOME,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONPATH": SANDBOX_FAASMP,
    "FAASMP_ISOLATED": "1",
}

#: Variables set in the sandbox, not inherited: bwrap's ``--chdir`` sets PWD,
#: Lithops' worker handler the others (and ``LITHOPS_*``, from the job).
SET_INSIDE = frozenset({"PWD", "PYTHONUNBUFFERED", "WARM_CONTAINER", "OBJC_DISABLE_INITIALIZE_FORK_SAFETY"})


def set_inside(name: str) -> bool:
    """True for an environment variable an isolated worker gets from the sandbox or Lithops."""
    return name in SANDBOX_ENV or name in SET_INSIDE or name.lstrip("_").startswith("LITHOPS")


#: Test fault (named so): the launcher asks bwrap to bind a path that does not
#: exist, so the sandbox of every task (not of Lithops' metadata query) fails to start.
FAULT_BROKEN_SANDBOX = "FAASMP_FAULT_BROKEN_SANDBOX"

_LOOPBACK = ("localhost", "::1")


class IsolationError(RuntimeError):
    """Isolation mode cannot be set up on this machine or with this configuration."""


# -- byte relays (both sides) ------------------------------------------------


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass  # the other direction closed both sockets: nothing left to relay
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass  # already closed by the other pump


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways between *a* and *b* until both directions end."""

    def run() -> None:
        back = threading.Thread(target=_pump, args=(b, a), daemon=True)
        back.start()
        _pump(a, b)
        back.join()
        a.close()
        b.close()

    threading.Thread(target=run, daemon=True).start()


class _Forwarder:
    """Accepts on *listener*; relays each connection to a fresh ``connect()``."""

    def __init__(self, listener: socket.socket, connect: Any, name: str) -> None:
        self._listener = listener
        self._connect = connect
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed: the forwarder is stopped
            try:
                upstream = self._connect()
            except OSError:
                conn.close()  # the client sees a reset, as with a refused connection
                continue
            _relay(conn, upstream)

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # a listening socket that never accepted may refuse shutdown
        self._listener.close()


# -- client side -------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A TCP address the sandbox may reach, relayed through Unix socket *sock*."""

    host: str
    port: int
    sock: str


def _endpoint_of(host: str | None, port: int | None, what: str) -> tuple[str, int]:
    host = host or "localhost"
    if not (host in _LOOPBACK or host.startswith("127.")):
        raise IsolationError(
            f"isolation mode serves {what} at its own address inside each worker's network namespace, "
            f"which works for a loopback address only; got {host!r}. Run Redis (or a TLS terminator) "
            "on 127.0.0.1 for isolated runs."
        )
    return ("127.0.0.1" if host == "localhost" else host), int(port or 6379)


def storage_config(redis_url: str) -> dict[str, Any]:
    """Lithops' Redis storage configuration (``redis`` section) for the server of *redis_url*."""
    parts = urlsplit(redis_url)
    conf: dict[str, Any] = {"host": parts.hostname or "localhost", "port": parts.port or 6379}
    if parts.username:
        conf["username"] = unquote(parts.username)
    if parts.password:
        conf["password"] = unquote(parts.password)
    if parts.path.strip("/").isdigit():
        conf["db"] = int(parts.path.strip("/"))
    if parts.scheme == "rediss":
        conf["ssl"] = True
        query = parse_qs(parts.query)
        if "ssl_ca_certs" in query:
            conf["ssl_ca_certs"] = query["ssl_ca_certs"][0]
    return conf


def storage_settings(cfg: Config) -> dict[str, Any]:
    """The ``redis`` section of Lithops' storage in isolation mode.

    ``lithops_config["redis"]`` when given (other credentials than faasmp's
    own, e.g. when faasmp's Redis user may touch only ``fmp:*`` keys), else
    the server of ``redis_url`` with its credentials.
    """
    given = dict(cfg.lithops_config).get("redis")
    if given:
        return dict(given)
    assert cfg.redis_url is not None  # check_config requires it
    return storage_config(cfg.redis_url)


def check_config(cfg: Config) -> str | None:
    """Why isolation mode cannot run with *cfg*, or None."""
    if not cfg.isolate:
        return None
    if not cfg.is_local:
        return f"isolation mode (FAASMP_ISOLATE) is for the localhost backend, not {cfg.backend!r}"
    if not cfg.redis_url or urlsplit(cfg.redis_url).scheme not in ("redis", "rediss"):
        return (
            "isolation mode (FAASMP_ISOLATE) needs a Redis reached over TCP (FAASMP_REDIS_URL "
            "redis:// or rediss://): isolated workers cannot see the embedded server's unix socket"
        )
    return None


def _source_tree() -> Path:
    """The directory holding the ``faasmp`` package this client imports."""
    return Path(__file__).resolve().parents[2]


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    files = [root / "pyproject.toml"] if (root / "pyproject.toml").is_file() else []
    for package in ("faasmp", "faasmp_magics"):
        found = (root / package).rglob("*")
        files += sorted(p for p in found if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def runtime_prefix(cache_dir: Path | None = None, timeout: float = 300.0) -> Path:
    """A non-editable install of this faasmp (a directory for ``PYTHONPATH``), built once and cached.

    From a source checkout, ``pip wheel`` builds faasmp's wheel and ``pip
    install --target`` unpacks it, as a runtime image gets it; the result is
    cached under ``~/.cache/faasmp/isolation/<digest of the sources>``, so an
    edit rebuilds it.  When the wheel cannot be built (no build backend and no
    package index), the package directories are copied instead.
    """
    root = _source_tree()
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    base = cache_dir or cache_home / "faasmp" / "isolation"
    target = base / _tree_digest(root)
    if (target / "faasmp" / "__init__.py").is_file():
        os.utime(target)  # in use: kept by _prune
        return target
    base.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix="build-", dir=base))
    try:
        site = build / "site"
        if not ((root / "pyproject.toml").is_file() and _pip_install(root, build, site, timeout)):
            logger.warning("isolation mode: no wheel of faasmp could be built; copying its packages")
            for package in ("faasmp", "faasmp_magics"):
                if (root / package).is_dir():
                    skip = shutil.ignore_patterns("__pycache__")
                    shutil.copytree(root / package, site / package, ignore=skip)
        try:
            os.rename(site, target)  # atomic: a concurrent builder's result is as good
        except OSError:
            if not (target / "faasmp" / "__init__.py").is_file():
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    _prune(base, keep=target)
    return target


def _prune(base: Path, keep: Path, max_age: float = 86400.0) -> None:
    """Remove builds unused for *max_age* seconds (each edit of the sources makes one).

    Age, not count: several checkouts may share the cache, and a build in use
    by a running session must stay (using one refreshes its time).
    """
    now = time.time()
    for old in base.iterdir():
        if old != keep and old.is_dir() and now - old.stat().st_mtime > max_age:
            shutil.rmtree(old, ignore_errors=True)


def _pip_install(root: Path, build: Path, site: Path, timeout: float) -> bool:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    try:
        subprocess.run([*pip, "wheel", "--no-deps", "-w", str(build / "dist"), str(root)], check=True,
                       capture_output=True, timeout=timeout)  # fmt: skip
        (wheel,) = (build / "dist").glob("faasmp-*.whl")
        subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(site), str(wheel)],
                       check=True, capture_output=True, timeout=timeout)  # fmt: skip
    except (subprocess.SubprocessError, ValueError, OSError):
        shutil.rmtree(site, ignore_errors=True)
        return False
    return True


def find_bwrap() -> str:
    """Path of bubblewrap, or :class:`IsolationError` saying how to get it."""
    path = shutil.which("bwrap")
    if path is None:
        raise IsolationError(
            "isolation mode needs bubblewrap (`bwrap`): install it (Debian: apt-get install bubblewrap)"
        )
    return path


def _masked_files(venv: Path) -> list[str]:
    """The venv's hooks of a development install of faasmp (they point into the project)."""
    hooks = venv.glob("lib/python*/site-packages/__editable__*faasmp*")
    return sorted(str(p) for p in hooks if p.suffix in (".pth", ".py"))


class Isolation:
    """The client-side half of isolation mode for one Lithops executor.

    :attr:`runtime` is the executable to give Lithops' localhost backend as
    its ``runtime``: it puts each task into a sandbox.  Unix-socket relays to
    the allowed TCP endpoints run in this process until :meth:`close`.
    """

    def __init__(self, redis_url: str, storage: Mapping[str, Any], cache_dir: Path | None = None) -> None:
        self._bwrap = find_bwrap()
        self.dir = Path(tempfile.mkdtemp(prefix="faasmp-isolation-"))
        self._forwarders: list[_Forwarder] = []
        try:
            self.prefix = runtime_prefix(cache_dir)
            self.endpoints = self._start_relays(redis_url, storage)
            self.runtime = self._write_launcher(redis_url, storage)
        except BaseException:
            self.close()
            raise

    def _start_relays(self, redis_url: str, storage: Mapping[str, Any]) -> list[Endpoint]:
        parts = urlsplit(redis_url)
        wanted = {_endpoint_of(parts.hostname, parts.port, "Redis")}
        wanted.add(_endpoint_of(storage.get("host"), storage.get("port"), "Lithops' Redis storage"))
        net = self.dir / "net"
        net.mkdir()
        endpoints = []
        for i, (host, port) in enumerate(sorted(wanted)):
            endpoint = Endpoint(host, port, f"tcp{i}.sock")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(net / endpoint.sock))
            listener.listen(128)

            def connect(addr: tuple[str, int] = (host, port)) -> socket.socket:
                return socket.create_connection(addr, timeout=30)

            self._forwarders.append(_Forwarder(listener, connect, f"faasmp-isolation-{host}:{port}"))
            endpoints.append(endpoint)
        return endpoints

    def _write_launcher(self, redis_url: str, storage: Mapping[str, Any]) -> str:
        venv = Path(sys.prefix)
        in_venv = sys.prefix != sys.base_prefix
        python = f"{SANDBOX_VENV}/bin/python" if in_venv else sys.executable
        files = [q["ssl_ca_certs"][0] for q in [parse_qs(urlsplit(redis_url).query)] if "ssl_ca_certs" in q]
        if storage.get("ssl_ca_certs"):
            files.append(str(storage["ssl_ca_certs"]))
        spec = {
            "bwrap": self._bwrap,
            "base_prefix": sys.base_prefix,
            "venv": str(venv) if in_venv else None,
            "masked": _masked_files(venv) if in_venv else [],
            "prefix": str(self.prefix),
            "python": python,
            "jobs": str(self.dir / "jobs"),
            "exits": str(self.dir / "exits"),
            "net": str(self.dir / "net"),
            "files": sorted(set(files)),
            "endpoints": [e.__dict__ for e in self.endpoints],
        }
        (self.dir / "jobs").mkdir()
        (self.dir / "exits").mkdir()
        spec_path = self.dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        launcher = self.dir / "isolated-python"
        script = self.prefix / "faasmp" / "backends" / "isolation.py"
        # -I: the launcher runs on the client's machine with the standard library only.
        launcher.write_text(f"#!/bin/sh\nexec '{sys.executable}' -I '{script}' launch '{spec_path}' \"$@\"\n")
        launcher.chmod(0o755)
        return str(launcher)

    def failure(self, executor_id: str, job_id: str, call_id: str) -> str | None:
        """Why the sandbox of this Lithops call exited with an error, or None (not, or not yet)."""
        path = self.dir / "exits" / f"{executor_id}-{job_id}-{call_id}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # no record (yet): the call runs or ended well
        return (
            f"the isolated invocation (bwrap sandbox) exited with code {record['code']} before reporting "
            f"a result: {record['stderr'].strip() or '(no output)'}"
        )

    def close(self) -> None:
        """Stop the relays and remove this executor's private files."""
        for forwarder in self._forwarders:
            forwarder.close()
        self._forwarders.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- the launcher (client's machine) and the sandbox's init ---------------


def bwrap_command(spec: Mapping[str, Any], job_dir: str, argv: list[str]) -> list[str]:
    """The bubblewrap command running ``inside`` for the runner call *argv*."""
    cmd = [spec["bwrap"], "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"]
    cmd += ["--uid", "1000", "--gid", "1000", "--hostname", "faasmp-worker", "--clearenv"]
    for name, value in SANDBOX_ENV.items():
        cmd += ["--setenv", name, value]
    cmd += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            cmd += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            cmd += ["--ro-bind", f"/{link}", f"/{link}"]
    cmd += ["--ro-bind", spec["base_prefix"], spec["base_prefix"]]
    if spec["venv"]:
        cmd += ["--ro-bind", spec["venv"], SANDBOX_VENV]
        for path in spec["masked"]:
            cmd += ["--ro-bind", "/dev/null", SANDBOX_VENV + path[len(spec["venv"]) :]]
    cmd += ["--ro-bind", spec["prefix"], SANDBOX_FAASMP]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", SANDBOX_HOME]
    for path in spec["files"]:  # after the tmpfs: a CA file may live in the client's temp dir
        cmd += ["--ro-bind", path, path]
    cmd += ["--ro-bind", job_dir, SANDBOX_JOB, "--bind", spec["net"], SANDBOX_NET, "--chdir", SANDBOX_HOME]
    endpoints = json.dumps(spec["endpoints"])
    inner = [spec["python"], f"{SANDBOX_FAASMP}/faasmp/backends/isolation.py", "inside", endpoints]
    runner_args = [f"{SANDBOX_JOB}/runner.py", argv[1]]
    if len(argv) > 2:
        runner_args.append(f"{SANDBOX_JOB}/task.json")
    return [*cmd, "--", *inner, *runner_args]


def launch(spec_path: str, argv: list[str]) -> int:
    """Run Lithops' runner call ``[runner.py, command, task_file?]`` in a sandbox; its exit code."""
    spec = json.loads(Path(spec_path).read_text())
    job_dir = tempfile.mkdtemp(prefix="job-", dir=spec["jobs"])
    try:
        # What a cloud invocation receives: the runner and the task description.
        shutil.copyfile(argv[0], os.path.join(job_dir, "runner.py"))
        task = {}
        if len(argv) > 2:
            shutil.copyfile(argv[2], os.path.join(job_dir, "task.json"))
            task = json.loads(Path(argv[2]).read_text())
        cmd = bwrap_command(spec, job_dir, argv)
        if os.environ.get(FAULT_BROKEN_SANDBOX) and task:
            cmd[1:1] = ["--ro-bind", os.path.join(job_dir, "no-such-file"), "/no-such-file"]
        proc = subprocess.run(cmd, stderr=subprocess.PIPE)
        sys.stderr.buffer.write(proc.stderr)
        if proc.returncode != 0 and task:
            # Read by Isolation.failure(): a call that died before Lithops'
            # handler wrote its status would otherwise never end for the client.
            name = f"{task['executor_id']}-{task['job_id']}-{task['call_ids'][0]}.json"
            record = {"code": proc.returncode, "stderr": proc.stderr[-2000:].decode(errors="replace")}
            Path(spec["exits"], name).write_text(json.dumps(record))
        return proc.returncode
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def inside(endpoints: Iterable[Mapping[str, Any]], argv: list[str]) -> int:
    """In the sandbox: serve each endpoint on its TCP address, then run the runner."""
    forwarders = []
    for e in endpoints:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((e["host"], int(e["port"])))
        listener.listen(128)

        def connect(path: str = f"{SANDBOX_NET}/{e['sock']}") -> socket.socket:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s

        forwarders.append(_Forwarder(listener, connect, f"relay-{e['host']}:{e['port']}"))
    return subprocess.run([sys.executable, *argv]).returncode


def _main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "launch":
        return launch(argv[1], argv[2:])
    if len(argv) >= 3 and argv[0] == "inside":
        return inside(json.loads(argv[1]), argv[2:])
    usage = "isolation.py launch SPEC RUNNER CMD [TASK] | inside ENDPOINTS RUNNER CMD [TASK]"
    print(f"usage: {usage}; got {argv}")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
