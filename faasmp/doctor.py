"""``python -m faasmp doctor``: check a configuration end to end.

Checks, in order (a failed check skips those that depend on it):

1. **config** — settings load and validate (backend name, Redis URL).
2. **redis (client)** — the client reaches Redis; round-trip latency.
3. **compute** — one function invocation runs on the backend.
4. **redis (worker)** — a worker writes a token to Redis with the URL the
   workers get, and the client reads it back: a real round trip.
5. **versions** — python, faasmp, cloudpickle and lithops agree between
   client and worker (cloudpickle streams are not portable across versions).
6. **runtime manifest** — what the worker runtime can import (cached).
7. **isolation** (``FAASMP_ISOLATE=1`` only) — what an isolated worker could
   not reach: the client's files, processes and environment must be out of
   reach, the Redis and storage addresses in reach.

Every check has a timeout; the report prints ✓/✗ with the remedy, and the
exit code is 1 if any check failed.

Test faults (named so): ``FAASMP_FAULT_WORKER_VERSIONS="cloudpickle=0.0"``
makes the worker probe report other versions.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

#: Test fault: ``name=version[,name=version]`` the worker probe reports instead of its own.
FAULT_WORKER_VERSIONS = "FAASMP_FAULT_WORKER_VERSIONS"
OK, FAIL, SKIP = "✓", "✗", "-"


@dataclasses.dataclass
class Check:
    """The outcome of one check."""

    name: str
    ok: bool | None  # None: skipped
    detail: str
    remedy: str = ""
    seconds: float = 0.0

    @property
    def mark(self) -> str:
        return SKIP if self.ok is None else OK if self.ok else FAIL


class CheckFailed(Exception):
    def __init__(self, detail: str, remedy: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.remedy = remedy


def _run(name: str, timeout: float, fn: Callable[[], str]) -> Check:
    """Run *fn* in a thread, bounded by *timeout*; its return value is the detail."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["detail"] = fn()
        except CheckFailed as exc:
            box["fail"] = exc
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a report line
            box["fail"] = CheckFailed(f"{type(exc).__name__}: {exc}")

    t0 = time.perf_counter()
    thread = threading.Thread(target=target, name=f"faasmp-doctor-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    elapsed = time.perf_counter() - t0
    if thread.is_alive():
        return Check(
            name, False, f"no answer within {timeout:g} s", "raise --timeout or check the backend", elapsed
        )
    if "fail" in box:
        exc = box["fail"]
        return Check(name, False, exc.detail, exc.remedy, elapsed)
    return Check(name, True, box["detail"], "", elapsed)


# --- functions that run on a worker ----------------------------------------------


def worker_probe(fault: str = "") -> dict[str, Any]:
    """Runs on a worker: its versions and where it is."""
    import platform  # noqa: PLC0415

    from faasmp.deps import package_versions  # noqa: PLC0415

    versions = package_versions()
    for item in filter(None, (p.strip() for p in fault.split(","))):
        name, _, value = item.partition("=")
        versions[name] = value  # a fault injected by the test (FAASMP_FAULT_WORKER_VERSIONS)
    return {"versions": versions, "host": platform.node(), "pid": os.getpid(), "t": time.time()}


def worker_redis_roundtrip(url: str, key: str, token: str) -> dict[str, Any]:
    """Runs on a worker: write *token* to *key* in the Redis at *url*."""
    from faasmp.backends.state import open_state  # noqa: PLC0415

    t0 = time.perf_counter()
    state = open_state(url, client_name="faasmp-doctor")
    try:
        rtt = state.ping()
        state.set(key, f"{token}|{os.getpid()}".encode(), px=60_000)
    finally:
        state.close()
    return {"rtt": rtt, "connect_s": time.perf_counter() - t0}


def worker_isolation_probe(client: dict[str, Any]) -> dict[str, Any]:
    """Runs on a worker: which of the client's things (*client*) it reaches."""
    import socket  # noqa: PLC0415

    paths = {label: os.path.exists(path) for label, path in client["paths"].items()}
    paths["the client's processes (/proc/<client pid>)"] = os.path.exists(f"/proc/{client['pid']}")
    endpoints = {}
    for label, (host, port) in client["endpoints"].items():
        try:
            socket.create_connection((host, port), timeout=5).close()
            endpoints[label] = True
        except OSError:
            endpoints[label] = False
    env = sorted(name for name in client["env"] if name in os.environ)
    return {"paths": paths, "endpoints": endpoints, "env": env, "pid": os.getpid()}


# --- the checks ----------------------------------------------------------------


class Doctor:
    def __init__(self, timeout: float, refresh: bool, environ: dict[str, str] | None = None) -> None:
        self.timeout = timeout
        self.refresh = refresh
        self.environ = dict(os.environ) if environ is None else environ
        self.config: Any = None
        self.ctx: Any = None
        self.probe: dict[str, Any] | None = None
        self.checks: list[Check] = []
        self._own_compute: Any = None

    def add(self, check: Check) -> bool:
        self.checks.append(check)
        return bool(check.ok)

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, None, f"skipped: {why}"))

    def run(self) -> int:
        names = [
            "redis (client)",
            "redis (commands)",
            "compute",
            "redis (worker)",
            "versions",
            "runtime manifest",
        ]
        if not self.add(_run("config", self.timeout, self.check_config)):
            for n in names:
                self.skip(n, "the configuration is invalid")
            return 1
        try:
            redis_ok = self.add(_run("redis (client)", self.timeout, self.check_redis_client))
            if redis_ok:
                self.add(_run("redis (commands)", self.timeout, self.check_redis_commands))
            else:
                self.skip("redis (commands)", "needs Redis from the client")
            compute_ok = self.add(_run("compute", self.timeout, self.check_compute))
            if redis_ok and compute_ok:
                self.add(_run("redis (worker)", self.timeout, self.check_redis_worker))
            else:
                self.skip("redis (worker)", "needs Redis from the client and compute")
            if compute_ok:
                self.add(_run("versions", self.timeout, self.check_versions))
            else:
                self.skip("versions", "needs compute")
            self.add(_run("runtime manifest", self.timeout, self.check_manifest))
            if self.config.isolate:
                if compute_ok:
                    self.add(_run("isolation", self.timeout, self.check_isolation))
                else:
                    self.skip("isolation", "needs compute")
        finally:
            if self.ctx is not None:
                self.ctx.shutdown()
            if self._own_compute is not None:
                self._own_compute.shutdown()
        return 0 if all(c.ok is not False for c in self.checks) else 1

    def check_config(self) -> str:
        from faasmp import config as config_mod  # noqa: PLC0415

        try:
            self.config = config_mod.load(self.environ)
        except (ValueError, TypeError, FileNotFoundError) as exc:
            raise CheckFailed(str(exc), "fix the setting named above (docs/cloud.md)") from exc
        cfg = self.config
        if cfg.redis_url is None and not cfg.is_local:
            raise CheckFailed(
                f"backend {cfg.backend!r} with the embedded Redis: workers could not reach a "
                "server on this machine",
                "set FAASMP_REDIS_URL to a managed Redis reachable from both sides "
                "(rediss://, docs/cloud.md)",
            )
        redis = "embedded" if cfg.redis_url is None else config_mod.redact_url(cfg.redis_url)
        return f"backend {cfg.backend}, Redis {redis}"

    def check_redis_client(self) -> str:
        from faasmp.context import FaasContext  # noqa: PLC0415

        self.ctx = FaasContext(self.config)
        try:
            session = self.ctx.session
        except Exception as exc:
            raise CheckFailed(
                str(exc), "check FAASMP_REDIS_URL: host, port, password, TLS (rediss://)"
            ) from exc
        rtts = sorted(session.state.ping() for _ in range(20))
        return f"{session.url.split('://', 1)[0]}:// ping p50 {rtts[10] * 1e3:.2f} ms (20 pings)"

    def check_redis_commands(self) -> str:
        """Use a Queue, Pipe, Lock, Event and Value: every structure's commands and scripts.

        A managed Redis often gives faasmp a user with an ACL of its own; a
        missing command or key pattern shows here, named, rather than in the
        middle of the user's job.  Runs on the client only (the worker uses
        the same user and URL).
        """
        from faasmp.backends.state import StatePermissionError  # noqa: PLC0415

        ctx = self.ctx
        try:
            q = ctx.Queue()
            q.put("doctor")
            if q.get(timeout=self.timeout) != "doctor":
                raise CheckFailed("a Queue returned another item than the one put", "report this as a bug")
            a, b = ctx.Pipe()
            a.send(1)
            if not b.poll(self.timeout) or b.recv() != 1:
                raise CheckFailed("a Pipe lost a message", "report this as a bug")
            with ctx.Lock():
                pass
            ev = ctx.Event()
            ev.set()
            v = ctx.Value("i", 0)
            with v.get_lock():
                v.value += 1
            if not ev.wait(self.timeout) or v.value != 1:
                raise CheckFailed("an Event or Value lost its update", "report this as a bug")
        except StatePermissionError as exc:
            from faasmp.backends.server import acl_line  # noqa: PLC0415

            raise CheckFailed(
                str(exc).split(".  ", 1)[0],
                f"give the Redis user faasmp's ACL (docs/cloud.md): {acl_line('<user>')}",
            ) from exc
        return "Queue, Pipe, Lock, Event and Value work with this Redis user"

    def _compute(self) -> Any:
        from faasmp.runtime.session import ClientSession  # noqa: PLC0415

        if self.ctx is not None and self.ctx._session is not None:
            session: ClientSession = self.ctx._session
            return session.compute
        from faasmp.backends.compute import LithopsCompute  # noqa: PLC0415

        self._own_compute = LithopsCompute(self.config)
        return self._own_compute

    def check_compute(self) -> str:
        try:
            compute = self._compute()
        except Exception as exc:
            raise CheckFailed(
                str(exc),
                f"check the Lithops configuration of backend {self.config.backend!r} (docs/cloud.md)",
            ) from exc
        t0 = time.perf_counter()
        fault = self.environ.get(FAULT_WORKER_VERSIONS, "")
        self.probe = compute.call(worker_probe, (fault,), self.timeout)
        took = time.perf_counter() - t0
        return (
            f"one invocation on {self.config.backend!r} answered in {took:.2f} s (host {self.probe['host']})"
        )

    def check_redis_worker(self) -> str:
        session = self.ctx.session
        key = f"fmp:{{{session.run_id}}}:doctor:{secrets.token_hex(4)}"
        token = secrets.token_hex(8)
        t0 = time.perf_counter()
        try:
            answer = self._compute().call(worker_redis_roundtrip, (session.url, key, token), self.timeout)
        except Exception as exc:
            raise CheckFailed(
                f"the worker could not use Redis: {exc}",
                "workers need a Redis they can reach: a public or VPC endpoint of a managed Redis, "
                "firewall/security group open to the function's network, TLS with rediss:// if required",
            ) from exc
        stored = session.state.get(key)
        session.state.delete(key)
        if stored is None or bytes(stored).split(b"|")[0] != token.encode():
            raise CheckFailed(
                "the worker reported success but the client does not see its write: "
                "they use different Redis servers",
                "make FAASMP_REDIS_URL name the same server for client and workers",
            )
        return (
            f"worker wrote, client read back (round trip {time.perf_counter() - t0:.2f} s, "
            f"worker ping {answer['rtt'] * 1e3:.2f} ms)"
        )

    def check_versions(self) -> str:
        from faasmp.deps import package_versions  # noqa: PLC0415

        assert self.probe is not None
        mine = package_versions()
        theirs = self.probe["versions"]
        bad = [
            f"{name} {mine[name]} here vs {theirs.get(name)} on the worker"
            for name in ("python", "faasmp", "cloudpickle", "lithops")
            if not _compatible(name, mine[name], str(theirs.get(name)))
        ]
        if bad:
            fault = (
                " [fault injected: FAASMP_FAULT_WORKER_VERSIONS]"
                if self.environ.get(FAULT_WORKER_VERSIONS)
                else ""
            )
            raise CheckFailed(
                "; ".join(bad) + fault,
                "build the worker runtime from deploy/Dockerfile with the client's versions "
                "(pip install faasmp==X cloudpickle==Y lithops==Z), then `lithops runtime build`",
            )
        return ", ".join(f"{k} {mine[k]}" for k in ("python", "faasmp", "cloudpickle", "lithops"))

    def check_manifest(self) -> str:
        from faasmp.deps import manifest_for  # noqa: PLC0415

        m = manifest_for(self.config, refresh=self.refresh, timeout=self.timeout)
        if m.live:
            return (
                f"localhost: the workers run this interpreter ({m.runtime}); imports are checked against it"
            )
        age = time.time() - m.collected
        return (
            f"{len(m.distributions)} distributions, {len(m.modules)} top-level modules in {m.runtime} "
            f"(collected {age / 3600:.1f} h ago; --refresh to ask again)"
        )

    def check_isolation(self) -> str:
        # A file of the client's temp dir (the dir itself may appear in the
        # sandbox as the parent of a CA file bound there).
        with tempfile.NamedTemporaryFile(prefix="faasmp-doctor-") as marker:
            return self._isolation_report(marker.name)

    def _isolation_report(self, marker: str) -> str:
        import faasmp  # noqa: PLC0415
        from faasmp.backends.isolation import set_inside, storage_settings  # noqa: PLC0415

        url = urlsplit(self.config.redis_url)
        storage = storage_settings(self.config)
        redis_at = (url.hostname, url.port or 6379)
        storage_at = (storage["host"], int(storage.get("port", 6379)))
        client: dict[str, Any] = {
            "pid": os.getpid(),
            "paths": {
                "a file in the client's temp dir": marker,
                "faasmp's directory on the client": os.path.dirname(faasmp.__file__),
                "the client's working directory": os.getcwd(),
            },
            # Names only: a variable the worker has under the same name came from the client.
            "env": sorted(n for n in os.environ if not set_inside(n)),
            "endpoints": {
                f"Redis {redis_at[0]}:{redis_at[1]}": redis_at,
                f"Lithops storage {storage_at[0]}:{storage_at[1]}": storage_at,
            },
        }
        seen = self._compute().call(worker_isolation_probe, (client,), self.timeout)
        leaks = [label for label, reached in seen["paths"].items() if reached]
        if seen["env"]:
            leaks.append(f"the client's environment ({', '.join(seen['env'][:5])})")
        missing = [label for label, reached in seen["endpoints"].items() if not reached]
        if leaks:
            raise CheckFailed(
                f"an isolated worker reached {'; '.join(leaks)}",
                "isolation mode is not in effect: check that bwrap runs (FAASMP_ISOLATE=1, docs/cloud.md)",
            )
        if missing:
            raise CheckFailed(
                f"an isolated worker could not reach {'; '.join(missing)}",
                "isolation mode relays only the Redis and Lithops storage addresses (loopback TCP)",
            )
        unreachable = [*client["paths"], "the client's processes", f"{len(client['env'])} client variables"]
        return (
            f"worker pid {seen['pid']} in its own namespaces could not reach {', '.join(unreachable)}; "
            f"reached {' and '.join(seen['endpoints'])}"
        )

    def report(self) -> str:
        lines = ["faasmp doctor"]
        for c in self.checks:
            lines.append(f"  {c.mark} {c.name:<17} {c.detail}")
            if c.ok is False and c.remedy:
                lines.append(f"      fix: {c.remedy}")
        failed = sum(c.ok is False for c in self.checks)
        lines.append("all checks passed" if not failed else f"{failed} check(s) failed")
        return "\n".join(lines)


def _compatible(name: str, mine: str, theirs: str) -> bool:
    if name == "python":  # pickled code objects need the same minor version
        return mine.split(".")[:2] == theirs.split(".")[:2]
    return mine == theirs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds each check may take (default 120)"
    )
    parser.add_argument(
        "--refresh", action="store_true", help="ask the worker runtime for its manifest again (not the cache)"
    )


def main(args: argparse.Namespace) -> int:
    doctor = Doctor(timeout=args.timeout, refresh=args.refresh)
    code = doctor.run()
    print(doctor.report())
    sys.stdout.flush()
    return code
